package sink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
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

func testSMTPSink(t *testing.T, latency time.Duration) (*SMTP, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writes := new(atomic.Int64)
	s := NewSMTP(countingListener{ln, writes}, latency, 100)
	t.Cleanup(s.Close)
	return s, writes
}

// dialSink connects to s and reads the greeting.
func dialSink(t *testing.T, s *SMTP) (net.Conn, *textproto.Conn) {
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

func checkTally(t *testing.T, tl *Tally, accepted, distinct, doubled int) {
	t.Helper()
	a, d, dd := tl.Snapshot()
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
	checkTally(t, s.tally, 0, 0, 0) // nothing before the end of DATA
	send(t, c, "Subject: hello\r\n\r\nhello\r\n.\r\n")
	expect(t, tc, 250, "end of DATA")
	// The unknown recipient counts as accepted and, being nobody's, as
	// doubled.
	checkTally(t, s.tally, 2, 1, 1)
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
	checkTally(t, s.tally, 2, 2, 0)
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
	checkTally(t, s.tally, 2, 2, 0)
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
	checkTally(t, s.tally, 1, 1, 0)
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
	checkTally(t, s.tally, 0, 0, 0)
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
	checkTally(t, s.tally, 2, 2, 0)
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
	checkTally(t, s.tally, 1, 1, 0)
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
	checkTally(t, s.tally, 4, 4, 0)
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
	go func() { s.Close(); close(done) }()
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
	checkTally(t, s.tally, 0, 0, 0)
}

// TestTwilioSinkResponse checks the Message resource the Twilio sink
// returns, byte for byte as the map-encoding sink wrote it.
func TestTwilioSinkResponse(t *testing.T) {
	s, err := StartTwilio(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	form := url.Values{"To": {"+447400000003"}, "From": {"+447400999999"}, "Body": {"<b>Atlas & co</b>"}}
	resp, err := http.PostForm(s.URL()+"/2010-04-01/Accounts/AC123/Messages.json", form)
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
	if a, d, _ := s.tally.Snapshot(); a != 1 || d != 1 {
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
	checkTally(t, s.tally, 1, 1, 0)
	// Two chunks: counted once, at the last.
	cmd(t, tc, 250, "MAIL FROM:<a@bench.example>")
	cmd(t, tc, 250, "RCPT TO:<manager2@x.example>")
	send(t, c, "BDAT 5\r\nabcde")
	expect(t, tc, 250, "first chunk")
	checkTally(t, s.tally, 1, 1, 0)
	send(t, c, "BDAT 3 LAST\r\nfg\n")
	expect(t, tc, 250, "last chunk")
	checkTally(t, s.tally, 2, 2, 0)
	// Without a recipient the chunk is still read, then refused, and the
	// session goes on.
	send(t, c, "MAIL FROM:<a@bench.example>\r\nBDAT 4 LAST\r\nRSETNOOP\r\n")
	expect(t, tc, 250, "MAIL")
	expect(t, tc, 503, "BDAT without RCPT")
	expect(t, tc, 250, "NOOP after the chunk")
	checkTally(t, s.tally, 2, 2, 0)
	// A size that cannot be read ends the session.
	send(t, c, "BDAT many LAST\r\n")
	expect(t, tc, 501, "BDAT many")
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after a malformed BDAT: read %v, want EOF", err)
	}
}

func testTwilioSink(t *testing.T, latency time.Duration) (*Twilio, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writes := new(atomic.Int64)
	s := NewTwilio(countingListener{ln, writes}, latency, 100)
	t.Cleanup(s.Close)
	return s, writes
}

// twilioClient is a net/http client of its own, so that the connections a
// test sees are its own.
func twilioClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{ExpectContinueTimeout: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

const twilioTestPath = "/2010-04-01/Accounts/AC123/Messages.json"

// do sends a request with client and returns the response, its body read,
// and whether it went on a connection used before.
func do(t *testing.T, client *http.Client, method, url, contentType, body string) (resp *http.Response, respBody []byte, reused bool) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.SetBasicAuth("AC123", "secret") // as twilio-go does; not checked
	resp, err = client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if respBody, err = io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if method != "HEAD" && resp.ContentLength != int64(len(respBody)) {
		t.Errorf("%s %s: Content-Length %d for %d bytes", method, url, resp.ContentLength, len(respBody))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, url, ct)
	}
	return resp, respBody, reused
}

const formType = "application/x-www-form-urlencoded"

func TestTwilioSinkKeepAlive(t *testing.T) {
	s, _ := testTwilioSink(t, 0)
	client := twilioClient(t)
	sids := map[string]bool{}
	for i := 1; i <= 5; i++ {
		to := fmt.Sprintf("+4474%08d", i)
		form := url.Values{"To": {to}, "From": {"+447400999999"}, "Body": {"Café <b> & co"}}
		resp, body, reused := do(t, client, "POST", s.URL()+twilioTestPath, formType+"; charset=utf-8", form.Encode())
		if reused != (i > 1) {
			t.Errorf("request %d: connection reused %v", i, reused)
		}
		if resp.StatusCode != http.StatusCreated || resp.Close {
			t.Errorf("request %d: status %d, close %v", i, resp.StatusCode, resp.Close)
		}
		var m twilioMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if m.To != to || m.From != "+447400999999" || m.Body != "Café <b> & co" || m.AccountSID != "AC123" || m.Status != "queued" || m.NumSegments != "1" {
			t.Errorf("request %d: %+v", i, m)
		}
		if !regexp.MustCompile(`^SM[0-9a-f]{32}$`).MatchString(m.SID) || sids[m.SID] {
			t.Errorf("request %d: sid %q, seen before: %v", i, m.SID, sids[m.SID])
		}
		sids[m.SID] = true
	}
	s.mu.Lock()
	open := len(s.conns)
	s.mu.Unlock()
	if open != 1 {
		t.Errorf("%d connections open, want 1", open)
	}
	checkTally(t, s.tally, 5, 5, 0)
}

func TestTwilioSinkErrors(t *testing.T) {
	s, _ := testTwilioSink(t, 0)
	client := twilioClient(t)
	for _, r := range []struct {
		method, path, contentType, body string
		status                          int
		want                            []byte
	}{
		{"POST", twilioTestPath, formType, "To=%zz", 400, twilioBadForm},
		{"POST", "/2010-04-01/Accounts/AC123/Calls.json", formType, "To=%2B447400000001", 404, twilioNotFound},
		{"POST", "/2010-04-01/Accounts//Messages.json", formType, "To=%2B447400000001", 404, twilioNotFound},
		{"POST", "/2010-04-01/Accounts/AC1/x/Messages.json", formType, "To=%2B447400000001", 404, twilioNotFound},
		{"GET", "/", "", "", 404, twilioNotFound},
		{"GET", twilioTestPath, "", "", 405, twilioBadMethod},
		{"HEAD", twilioTestPath, "", "", 405, nil},
		// Not a form: nothing to parse, nobody's recipient counted.
		{"POST", twilioTestPath + "?x=1", "application/json", `{"To":"+447400000002"}`, 201, nil},
		{"POST", twilioTestPath, formType, "To=%2B447400000003", 201, nil},
	} {
		resp, body, reused := do(t, client, r.method, s.URL()+r.path, r.contentType, r.body)
		what := r.method + " " + r.path + " " + r.body
		if resp.StatusCode != r.status || (r.want != nil && !bytes.Equal(body, r.want)) {
			t.Errorf("%s: %d %s, want %d %s", what, resp.StatusCode, body, r.status, r.want)
		}
		if r.status == 405 && resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s: Allow %q", what, resp.Header.Get("Allow"))
		}
		if r.method == "HEAD" && (len(body) != 0 || resp.ContentLength != int64(len(twilioBadMethod))) {
			t.Errorf("%s: %d bytes of body, Content-Length %d", what, len(body), resp.ContentLength)
		}
		if !reused && r.path+r.body != twilioTestPath+"To=%zz" {
			t.Errorf("%s: on a new connection: an error closed the last", what)
		}
	}
	checkTally(t, s.tally, 2, 1, 1)
	if s.tally.counts[3] != 1 {
		t.Errorf("+447400000003 counted %d times", s.tally.counts[3])
	}
}

// rawCreate is a create-message request for to, with extra header fields.
func rawCreate(proto, to, extra string) string {
	body := url.Values{"To": {to}, "Body": {"hello"}}.Encode()
	return "POST " + twilioTestPath + " " + proto + "\r\nHost: sink\r\nContent-Type: " + formType + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n" + extra + "\r\n" + body
}

func dialTwilio(t *testing.T, s *Twilio) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// readResponse reads a response and its body from br, checking status.
func readResponse(t *testing.T, br *bufio.Reader, status int, what string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if resp.StatusCode != status {
		t.Errorf("%s: status %d %s, want %d", what, resp.StatusCode, body, status)
	}
	return resp, body
}

// expectEOF checks that the sink closed the connection c, read by br.
func expectEOF(t *testing.T, c net.Conn, br *bufio.Reader, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := br.ReadByte(); err != io.EOF {
		t.Errorf("%s: read %q, %v; want EOF", what, b, err)
	}
}

func TestTwilioSinkConnectionClose(t *testing.T) {
	s, _ := testTwilioSink(t, 0)
	for i, r := range []struct {
		proto, extra string
		close        bool
	}{
		{"HTTP/1.1", "Connection: close\r\n", true},
		{"HTTP/1.1", "connection: TE, Close\r\n", true},
		{"HTTP/1.0", "", true},
		{"HTTP/1.0", "Connection: keep-alive\r\n", false},
		{"HTTP/1.1", "Connection: keep-alive\r\n", false},
	} {
		what := r.proto + " " + r.extra
		c, br := dialTwilio(t, s)
		send(t, c, rawCreate(r.proto, fmt.Sprintf("+4474%08d", i), r.extra))
		resp, _ := readResponse(t, br, 201, what)
		if resp.Close != r.close {
			t.Errorf("%s: response says close %v", what, resp.Close)
		}
		if r.close {
			expectEOF(t, c, br, what)
			continue
		}
		if r.proto == "HTTP/1.0" && !strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") {
			t.Errorf("%s: Connection %q", what, resp.Header.Get("Connection"))
		}
		send(t, c, rawCreate(r.proto, "+447400000099", "Connection: close\r\n"))
		readResponse(t, br, 201, what+", then a second request")
		expectEOF(t, c, br, what+", then a second request")
	}
	checkTally(t, s.tally, 7, 6, 1)
}

func TestTwilioSinkSplitRequest(t *testing.T) {
	s, _ := testTwilioSink(t, 0)
	c, br := dialTwilio(t, s)
	req := rawCreate("HTTP/1.1", "+447400000001", "")
	// Cut in the method, the path, a CRLF, a field name, the blank line
	// and the body.
	cuts := []int{2, 20, strings.Index(req, "\r\n") + 1, strings.Index(req, "Content-T") + 4, strings.Index(req, "\r\n\r\n") + 3, len(req) - 3}
	last := 0
	for _, cut := range cuts {
		send(t, c, req[last:cut])
		last = cut
		time.Sleep(10 * time.Millisecond)
	}
	// Nothing is answered before the body is whole.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("before the end of the body: read %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	send(t, c, req[last:])
	_, body := readResponse(t, br, 201, "split request")
	if !bytes.Contains(body, []byte(`"to":"+447400000001"`)) {
		t.Errorf("body %s", body)
	}
	checkTally(t, s.tally, 1, 1, 0)
}

func TestTwilioSinkPipelining(t *testing.T) {
	s, writes := testTwilioSink(t, 0)
	c, br := dialTwilio(t, s)
	w0 := writes.Load()
	send(t, c, rawCreate("HTTP/1.1", "+447400000001", "")+"GET /nowhere HTTP/1.1\r\nHost: sink\r\n\r\n"+rawCreate("HTTP/1.1", "+447400000002", ""))
	_, body := readResponse(t, br, 201, "first")
	if !bytes.Contains(body, []byte(`"to":"+447400000001"`)) {
		t.Errorf("first body %s", body)
	}
	readResponse(t, br, 404, "second")
	_, body = readResponse(t, br, 201, "third")
	if !bytes.Contains(body, []byte(`"to":"+447400000002"`)) {
		t.Errorf("third body %s", body)
	}
	if w := writes.Load() - w0; w != 1 {
		t.Errorf("%d writes of responses, want 1", w)
	}
	checkTally(t, s.tally, 2, 2, 0)
}

// TestTwilioSinkLatency checks that each request waits the latency once,
// and that a pipelined request's wait does not hold back the response to
// the one before.
func TestTwilioSinkLatency(t *testing.T) {
	const latency = 300 * time.Millisecond
	s, _ := testTwilioSink(t, latency)
	c, br := dialTwilio(t, s)
	start := time.Now()
	send(t, c, rawCreate("HTTP/1.1", "+447400000001", "")+rawCreate("HTTP/1.1", "+447400000002", ""))
	readResponse(t, br, 201, "first")
	if d := time.Since(start); d < latency || d >= 2*latency {
		t.Errorf("first response after %s, want %s", d, latency)
	}
	readResponse(t, br, 201, "second")
	if d := time.Since(start); d < 2*latency || d >= 4*latency {
		t.Errorf("second response after %s, want %s", d, 2*latency)
	}
	checkTally(t, s.tally, 2, 2, 0)
}

func TestTwilioSinkExpectContinue(t *testing.T) {
	s, _ := testTwilioSink(t, 0)
	client := twilioClient(t) // its timeout is shorter than ExpectContinueTimeout
	req, err := http.NewRequest("POST", s.URL()+twilioTestPath, strings.NewReader("To=%2B447400000001"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", formType)
	req.Header.Set("Expect", "100-continue")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Errorf("status %d", resp.StatusCode)
	}
	checkTally(t, s.tally, 1, 1, 0)
}

// TestTwilioSinkRefusals checks requests the sink cannot read on: each is
// answered, and the connection closed.
func TestTwilioSinkRefusals(t *testing.T) {
	// StartTwilio, not testTwilioSink: the connections must be TCP
	// ones, which linger before closing so that the client gets the
	// response although it has sent more.
	s, err := StartTwilio(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	bigField := "X-Big: " + strings.Repeat("a", 15<<10) + "\r\n"
	for _, r := range []struct {
		name, req string
		status    int
	}{
		{"header too large", "POST / HTTP/1.1\r\n" + strings.Repeat(bigField, 5) + "\r\n", 431},
		{"line too long", "GET /" + strings.Repeat("a", httpReadBuffer) + " HTTP/1.1\r\n\r\n", 431},
		{"body too large", "POST " + twilioTestPath + " HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413},
		{"chunked", "POST " + twilioTestPath + " HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nTo=%2\r\n0\r\n\r\n", 411},
		{"bad request line", "GARBAGE\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 505},
		{"bad length", "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
		{"two lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"folded field", "GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : sink\r\n\r\n", 400},
		{"unknown expectation", "POST / HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 1\r\n\r\na", 417},
	} {
		c, br := dialTwilio(t, s)
		// After a request kept alive, so that the refusal must close.
		send(t, c, "GET /nowhere HTTP/1.1\r\nHost: sink\r\n\r\n")
		readResponse(t, br, 404, r.name+": the request before")
		go func() { _, _ = io.WriteString(c, r.req) }() // may block: the sink stops reading
		resp, body := readResponse(t, br, r.status, r.name)
		var e struct{ Status int }
		if err := json.Unmarshal(body, &e); err != nil || e.Status != r.status || !resp.Close {
			t.Errorf("%s: body %s (%v), close %v", r.name, body, err, resp.Close)
		}
		expectEOF(t, c, br, r.name)
	}
	checkTally(t, s.tally, 0, 0, 0)
}

func TestTwilioSinkCloseWithOpenConnections(t *testing.T) {
	s, _ := testTwilioSink(t, time.Hour)
	idle, idleR := dialTwilio(t, s) // kept alive after a response
	send(t, idle, "GET /nowhere HTTP/1.1\r\nHost: sink\r\n\r\n")
	readResponse(t, idleR, 404, "before close")
	busy, busyR := dialTwilio(t, s) // waiting out the latency when closed
	send(t, busy, rawCreate("HTTP/1.1", "+447400000001", ""))
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
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
	expectEOF(t, idle, idleR, "idle connection")
	expectEOF(t, busy, busyR, "busy connection")
	if _, err := net.DialTimeout("tcp", s.ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after close")
	}
	checkTally(t, s.tally, 0, 0, 0)
}

// FuzzMessageForm checks the sink's form reader against url.ParseQuery.
func FuzzMessageForm(f *testing.F) {
	for _, s := range []string{
		"To=%2B447400000001&From=%2B447400999999&Body=Caf%C3%A9+%3Cb%3E+%26+co",
		"To=%zz", "To=1;x", "T%6F=2&To=3", "Body=&Body=x", "x=%2", "&&To=+1&", "%=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		to, from, body, ok := messageForm([]byte(s))
		want, err := url.ParseQuery(s)
		if ok != (err == nil) {
			t.Fatalf("%q: ok %v, ParseQuery error %v", s, ok, err)
		}
		if ok && (to != want.Get("To") || from != want.Get("From") || body != want.Get("Body")) {
			t.Fatalf("%q: %q %q %q, want %q %q %q", s, to, from, body, want.Get("To"), want.Get("From"), want.Get("Body"))
		}
	})
}

func TestRecipientNumber(t *testing.T) {
	for in, want := range map[string]int{
		"manager17@care17.example": 17, "+447400000042": 42, "someone@else.example": -1, "manager@x": -1,
	} {
		if got := recipientNumber(in); got != want {
			t.Errorf("recipientNumber(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestTallyWatchesTheRecipientsFromANumberOn(t *testing.T) {
	tl := NewTally(10)
	tl.Watch(8)
	tl.Reset(time.Now())
	for _, r := range []string{"manager1@a.example", "manager8@critical.example", "+447400000009", "manager8@critical.example"} {
		tl.accept(r)
	}
	arr := tl.Arrivals()
	if len(arr) != 2 || arr[8] > arr[9] {
		t.Errorf("arrivals %v, want the first of 8 and 9 only", arr)
	}
	if _, _, doubled := tl.Snapshot(); doubled != 1 {
		t.Errorf("doubled %d, want 1", doubled)
	}
	tl.Reset(time.Now())
	if len(tl.Arrivals()) != 0 {
		t.Error("Reset kept the arrivals")
	}
}
