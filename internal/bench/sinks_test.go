package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts the writes on the connections it accepts, to see
// that replies to pipelined commands go out together.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

func testSMTPSink(t *testing.T, latency time.Duration) (*smtpSink, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writes := new(atomic.Int64)
	s := newSMTPSink(countingListener{ln, writes}, latency, 100)
	t.Cleanup(s.close)
	return s, writes
}

// dialSink connects to s and reads the greeting.
func dialSink(t *testing.T, s *smtpSink) (net.Conn, *textproto.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	tc := textproto.NewConn(c)
	if _, msg, err := tc.ReadResponse(220); err != nil || msg != "sink.bench ESMTP" {
		t.Fatalf("greeting %q: %v", msg, err)
	}
	return c, tc
}

// cmd sends one command and expects a reply with code.
func cmd(t *testing.T, tc *textproto.Conn, code int, line string) string {
	t.Helper()
	if err := tc.PrintfLine("%s", line); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return expect(t, tc, code, line)
}

func expect(t *testing.T, tc *textproto.Conn, code int, what string) string {
	t.Helper()
	_, msg, err := tc.ReadResponse(code)
	if err != nil {
		t.Fatalf("%s: want %d, got %v", what, code, err)
	}
	return msg
}

// send writes raw bytes, for bodies and pipelined groups.
func send(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func checkTally(t *testing.T, s *smtpSink, accepted, distinct, doubled int) {
	t.Helper()
	a, d, dd := s.tally.snapshot()
	if a != accepted || d != distinct || dd != doubled {
		t.Errorf("tally: accepted %d, distinct %d, doubled %d; want %d, %d, %d", a, d, dd, accepted, distinct, doubled)
	}
}

func TestSMTPSinkTransaction(t *testing.T) {
	s, _ := testSMTPSink(t, 0)
	c, tc := dialSink(t, s)
	ehlo := cmd(t, tc, 250, "EHLO crier.example")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE"} {
		if !strings.Contains(ehlo, "\n"+ext) {
			t.Errorf("EHLO reply lacks %s:\n%s", ext, ehlo)
		}
	}
	cmd(t, tc, 250, "MAIL FROM:<status@bench.example> BODY=8BITMIME SMTPUTF8")
	cmd(t, tc, 250, "RCPT TO:<manager7@care7.example>")
	cmd(t, tc, 250, "rcpt to:<someone@else.example> NOTIFY=NEVER")
	cmd(t, tc, 354, "DATA")
	checkTally(t, s, 0, 0, 0) // nothing before the end of DATA
	send(t, c, "Subject: hello\r\n\r\nhello\r\n.\r\n")
	expect(t, tc, 250, "end of DATA")
	// The unknown recipient counts as accepted and, being nobody's, as
	// doubled.
	checkTally(t, s, 2, 1, 1)
	if s.tally.counts[7] != 1 {
		t.Errorf("manager7 counted %d times", s.tally.counts[7])
	}
	cmd(t, tc, 221, "QUIT")
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after QUIT: read %v, want EOF", err)
	}
}

func TestSMTPSinkPipelining(t *testing.T) {
	s, writes := testSMTPSink(t, 0)
	c, tc := dialSink(t, s)
	cmd(t, tc, 250, "EHLO crier.example")
	buf := make([]byte, 4096)
	for _, step := range []struct{ send, want string }{
		{"MAIL FROM:<a@bench.example>\r\nRCPT TO:<manager1@x.example>\r\nDATA\r\n", `^250 [^\r\n]*\r\n250 [^\r\n]*\r\n354 [^\r\n]*\r\n$`},
		// The end of one message and the next one's commands.
		{"body\r\n.\r\nMAIL FROM:<a@bench.example>\r\nRCPT TO:<manager2@x.example>\r\nDATA\r\n", `^250 [^\r\n]*\r\n250 [^\r\n]*\r\n250 [^\r\n]*\r\n354 [^\r\n]*\r\n$`},
		{"body\r\n.\r\nQUIT\r\n", `^250 [^\r\n]*\r\n221 [^\r\n]*\r\n$`},
	} {
		w0 := writes.Load()
		send(t, c, step.send)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(step.want).Match(buf[:n]) {
			t.Errorf("sent %q, one read got %q", step.send, buf[:n])
		}
		if w := writes.Load() - w0; w != 1 {
			t.Errorf("sent %q: %d writes of replies, want 1", step.send, w)
		}
	}
	checkTally(t, s, 2, 2, 0)
}

func TestSMTPSinkTwoMessages(t *testing.T) {
	s, _ := testSMTPSink(t, 0)
	c, tc := dialSink(t, s)
	cmd(t, tc, 250, "EHLO crier.example")
	for _, to := range []string{"manager1@x.example", "manager2@x.example"} {
		cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
		cmd(t, tc, 250, "RCPT TO:<"+to+">")
		cmd(t, tc, 354, "DATA")
		send(t, c, "Subject: x\r\n\r\nhello\r\n.\r\n")
		expect(t, tc, 250, "end of DATA")
	}
	// A recipient of the first message kept for the second would double.
	checkTally(t, s, 2, 2, 0)
}

func TestSMTPSinkRset(t *testing.T) {
	s, _ := testSMTPSink(t, 0)
	c, tc := dialSink(t, s)
	cmd(t, tc, 250, "EHLO crier.example")
	cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
	cmd(t, tc, 250, "RCPT TO:<manager1@x.example>")
	cmd(t, tc, 250, "RSET")
	cmd(t, tc, 503, "DATA")
	cmd(t, tc, 503, "RCPT TO:<manager1@x.example>")
	cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
	cmd(t, tc, 250, "RCPT TO:<manager2@x.example>")
	cmd(t, tc, 354, "DATA")
	send(t, c, "hello\r\n.\r\n")
	expect(t, tc, 250, "end of DATA")
	checkTally(t, s, 1, 1, 0)
	if s.tally.counts[1] != 0 {
		t.Errorf("manager1, reset, counted %d times", s.tally.counts[1])
	}
}

func TestSMTPSinkSequence(t *testing.T) {
	s, _ := testSMTPSink(t, 0)
	c, tc := dialSink(t, s)
	cmd(t, tc, 503, "MAIL FROM:<a@bench.example>") // before EHLO
	cmd(t, tc, 250, "helo crier.example")
	cmd(t, tc, 250, "NoOp")
	cmd(t, tc, 502, "VRFY manager1")
	cmd(t, tc, 502, "STARTTLS")
	cmd(t, tc, 502, "")
	cmd(t, tc, 503, "RCPT TO:<manager1@x.example>")
	cmd(t, tc, 503, "DATA")
	cmd(t, tc, 501, "MAIL TO:<a@bench.example>")
	cmd(t, tc, 250, "MAIL FROM:<>")
	cmd(t, tc, 503, "MAIL FROM:<a@bench.example>")
	cmd(t, tc, 503, "DATA")
	// A pipelining client sends DATA behind a RCPT that is then refused:
	// DATA must be refused too, or the client's next commands would be
	// taken for a body.
	send(t, c, "RCPT TO:<>\r\nDATA\r\nNOOP\r\n")
	expect(t, tc, 501, "RCPT TO:<>")
	expect(t, tc, 503, "DATA after a refused RCPT")
	expect(t, tc, 250, "NOOP")
	for i := range smtpMaxRecipients {
		cmd(t, tc, 250, "RCPT TO:<manager"+string(rune('0'+i))+"@x.example>")
	}
	cmd(t, tc, 452, "RCPT TO:<manager11@x.example>")
	checkTally(t, s, 0, 0, 0)
}

func TestSMTPSinkDotStuffing(t *testing.T) {
	s, _ := testSMTPSink(t, 0)
	c, tc := dialSink(t, s)
	cmd(t, tc, 250, "EHLO crier.example")
	cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
	cmd(t, tc, 250, "RCPT TO:<manager1@x.example>")
	cmd(t, tc, 354, "DATA")
	// Had any of these ended the body, the lines after it would get
	// replies of their own and the NOOP below a 502.
	send(t, c, "Subject: dots\r\n\r\n..\r\n..hidden\r\n. \r\n.x\r\n..\n\r\n.\rx\r\nafter\r\n.\r\n")
	expect(t, tc, 250, "end of DATA")
	cmd(t, tc, 250, "NOOP")
	// A bare LF ends the body too.
	cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
	cmd(t, tc, 250, "RCPT TO:<manager2@x.example>")
	cmd(t, tc, 354, "DATA")
	send(t, c, "hello\n.\n")
	expect(t, tc, 250, "end of DATA with bare LF")
	cmd(t, tc, 250, "NOOP")
	checkTally(t, s, 2, 2, 0)
}

func TestSMTPSinkLongLine(t *testing.T) {
	s, _ := testSMTPSink(t, 0)
	c, tc := dialSink(t, s)
	cmd(t, tc, 250, "EHLO crier.example")
	// A command longer than the buffer is refused whole.
	send(t, c, "NOOP "+strings.Repeat("z", 2*smtpReadBuffer)+"\r\n")
	expect(t, tc, 500, "long command")
	cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
	cmd(t, tc, 250, "RCPT TO:<manager1@x.example>")
	cmd(t, tc, 354, "DATA")
	// The first line fills the buffer exactly, so that what remains of it
	// is ".\r\n": the end of a line, not a line of its own.
	go func() {
		_, _ = io.WriteString(c, strings.Repeat("x", smtpReadBuffer)+".\r\n"+strings.Repeat("y", 3*smtpReadBuffer+7)+"\r\n.\r\n")
	}()
	expect(t, tc, 250, "end of DATA")
	cmd(t, tc, 250, "NOOP")
	checkTally(t, s, 1, 1, 0)
}

func TestSMTPSinkLatencyOncePerMessage(t *testing.T) {
	const latency = 200 * time.Millisecond
	s, _ := testSMTPSink(t, latency)
	c, tc := dialSink(t, s)
	cmd(t, tc, 250, "EHLO crier.example")
	cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
	for i := 1; i <= 4; i++ {
		cmd(t, tc, 250, "RCPT TO:<manager"+string(rune('0'+i))+"@x.example>")
	}
	cmd(t, tc, 354, "DATA")
	start := time.Now()
	send(t, c, "hello\r\n.\r\n")
	expect(t, tc, 250, "end of DATA")
	if d := time.Since(start); d < latency || d >= 3*latency {
		t.Errorf("end of DATA answered after %s, want %s once", d, latency)
	}
	checkTally(t, s, 4, 4, 0)
}

func TestSMTPSinkCloseWithOpenConnections(t *testing.T) {
	s, _ := testSMTPSink(t, time.Hour)
	idle, _ := dialSink(t, s)
	busy, tc := dialSink(t, s) // waiting out the latency when closed
	cmd(t, tc, 250, "EHLO crier.example")
	cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
	cmd(t, tc, 250, "RCPT TO:<manager1@x.example>")
	cmd(t, tc, 354, "DATA")
	send(t, busy, "hello\r\n.\r\n")
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { s.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return")
	}
	s.mu.Lock()
	open := len(s.conns)
	s.mu.Unlock()
	if open != 0 {
		t.Errorf("%d connections left open", open)
	}
	for _, c := range []net.Conn{idle, busy} {
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("client read after close: %v", err)
		}
	}
	if _, err := net.DialTimeout("tcp", s.ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after close")
	}
	checkTally(t, s, 0, 0, 0)
}

// TestTwilioSinkResponse checks the Message resource the Twilio sink
// returns, byte for byte as the map-encoding sink wrote it.
func TestTwilioSinkResponse(t *testing.T) {
	s, err := startTwilioSink(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	form := url.Values{"To": {"+447400000003"}, "From": {"+447400999999"}, "Body": {"<b>Atlas & co</b>"}}
	resp, err := http.PostForm(s.url()+"/2010-04-01/Accounts/AC123/Messages.json", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "application/json" || resp.ContentLength != int64(len(body)) {
		t.Errorf("status %d, Content-Type %q, Content-Length %d for %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), resp.ContentLength, len(body))
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	sid, _ := got["sid"].(string)
	if !regexp.MustCompile(`^SM[0-9a-f]{32}$`).MatchString(sid) {
		t.Errorf("sid %q", sid)
	}
	var old bytes.Buffer
	_ = json.NewEncoder(&old).Encode(map[string]any{
		"sid": sid, "account_sid": "AC123", "to": "+447400000003",
		"from": "+447400999999", "body": "<b>Atlas & co</b>", "status": "queued", "num_segments": "1",
	})
	if !bytes.Equal(body, old.Bytes()) {
		t.Errorf("body\n%s\nwant\n%s", body, old.Bytes())
	}
	if a, d, _ := s.tally.snapshot(); a != 1 || d != 1 {
		t.Errorf("tally: accepted %d, distinct %d", a, d)
	}
}

func TestSMTPSinkChunking(t *testing.T) {
	s, _ := testSMTPSink(t, 0)
	c, tc := dialSink(t, s)
	if ehlo := cmd(t, tc, 250, "EHLO crier.example"); !strings.Contains(ehlo, "\nCHUNKING") {
		t.Errorf("EHLO reply lacks CHUNKING:\n%s", ehlo)
	}
	// One message in one chunk, pipelined; the chunk holds a line "." that
	// must not end anything.
	body := "Subject: x\r\n\r\n.\r\nhello\r\n"
	send(t, c, "MAIL FROM:<a@bench.example>\r\nRCPT TO:<manager1@x.example>\r\nBDAT "+strconv.Itoa(len(body))+" LAST\r\n"+body)
	expect(t, tc, 250, "MAIL")
	expect(t, tc, 250, "RCPT")
	expect(t, tc, 250, "BDAT LAST")
	checkTally(t, s, 1, 1, 0)
	// Two chunks: counted once, at the last.
	cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
	cmd(t, tc, 250, "RCPT TO:<manager2@x.example>")
	send(t, c, "BDAT 5\r\nabcde")
	expect(t, tc, 250, "first chunk")
	checkTally(t, s, 1, 1, 0)
	send(t, c, "BDAT 3 LAST\r\nfg\n")
	expect(t, tc, 250, "last chunk")
	checkTally(t, s, 2, 2, 0)
	// Without a recipient the chunk is still read, then refused, and the
	// session goes on.
	send(t, c, "MAIL FROM:<a@bench.example>\r\nBDAT 4 LAST\r\nRSETNOOP\r\n")
	expect(t, tc, 250, "MAIL")
	expect(t, tc, 503, "BDAT without RCPT")
	expect(t, tc, 250, "NOOP after the chunk")
	checkTally(t, s, 2, 2, 0)
	// A size that cannot be read ends the session.
	send(t, c, "BDAT many LAST\r\n")
	expect(t, tc, 501, "BDAT many")
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after a malformed BDAT: read %v, want EOF", err)
	}
}
