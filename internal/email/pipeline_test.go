package email

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
)

// dotWriter is what textproto's DotWriter (used by go-mail's Client.Data)
// makes of body, followed by the final dot.
func dotWriter(body []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	w := textproto.NewWriter(bw).DotWriter()
	_, _ = w.Write(body)
	_ = w.Close()
	_ = bw.Flush()
	return out.Bytes()
}

func FuzzWriteDataMatchesDotWriter(f *testing.F) {
	for _, s := range []string{
		"", "a", "a\r\n", "a\n", ".\r\n", "..\r\n", "a\r\n.\r\nb", ".a\n.b\r\n.",
		"line\rwith CR\r\n", "\r\n\r\n", "\n.\n", "Subject: x\r\n\r\n=E2=80=94 caf=C3=A9\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got bytes.Buffer
		if err := writeData(bufio.NewWriter(&got), body); err != nil {
			t.Fatal(err)
		}
		out := got.Bytes()
		if !hasBareCR(body) {
			if want := dotWriter(body); !bytes.Equal(out, want) {
				t.Fatalf("writeData(%q) = %q, DotWriter gives %q", body, out, want)
			}
			return
		}
		// A CR not followed by LF is left as it is by writeData; DotWriter
		// turns CR CR LF into CR CR CR LF. Only the framing is checked.
		if !bytes.HasSuffix(out, []byte("\r\n.\r\n")) {
			t.Fatalf("writeData(%q) = %q: no final dot line", body, out)
		}
		lines := bytes.Split(out[:len(out)-len(".\r\n")], []byte("\n"))
		for i, l := range lines[:len(lines)-1] {
			if !bytes.HasSuffix(l, []byte("\r")) || bytes.Equal(l, []byte(".\r")) {
				t.Fatalf("writeData(%q) = %q: line %d %q", body, out, i, l)
			}
		}
	})
}

func hasBareCR(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return true
		}
	}
	return false
}

func BenchmarkWriteData(b *testing.B) {
	body := bytes.Repeat([]byte("Some users are experiencing sync issues on Sync Pod A. Care homes =\r\n.on Pod A\r\n"), 60)
	w := bufio.NewWriterSize(nopWriter{}, 4096)
	b.Run("writeData", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			_ = writeData(w, body)
		}
	})
	b.Run("DotWriter", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		tw := textproto.NewWriter(w)
		for b.Loop() {
			d := tw.DotWriter()
			_, _ = d.Write(body)
			_ = d.Close()
		}
	})
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// hangUp, at the end of what a scripted turn returns, makes the server
// close the connection after writing the rest.
const hangUp = "\x00hang up"

// scriptedServer accepts one connection, greets, answers EHLO with exts and
// then calls turn for every read of the client's bytes, writing what it
// returns (see hangUp); it records the reads.
func scriptedServer(t *testing.T, exts []string, turn func(read string) string) (url string, reads func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "220 scripted ESMTP\r\n")
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			in := string(buf[:n])
			var out string
			if in == "QUIT\r\n" {
				_, _ = io.WriteString(c, "221 bye\r\n")
				return
			}
			if strings.HasPrefix(in, "EHLO") {
				out = "250-scripted\r\n"
				for _, e := range exts {
					out += "250-" + e + "\r\n"
				}
				out += "250 HELP\r\n"
			} else {
				mu.Lock()
				got = append(got, in)
				mu.Unlock()
				out = turn(in)
			}
			out, hang := strings.CutSuffix(out, hangUp)
			if _, err := io.WriteString(c, out); err != nil || hang {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return "smtp://" + ln.Addr().String() + "?tls=none", func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

func scriptedSender(t *testing.T, url string) *Sender {
	t.Helper()
	settings, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Settings: settings, From: "Status <status@crier.example>", HELO: "crier.test", SendTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func scriptedMessage() deliver.Message {
	return deliver.Message{DeliveryID: 1, Channel: deliver.ChannelEmail, To: "manager@care.example",
		Subject: "[Investigating] Atlas Sync", Text: "text\n.leading dot\n", MessageID: "d1@crier.example"}
}

func TestPipeliningSendsTwoWritesPerMessage(t *testing.T) {
	url, reads := scriptedServer(t, []string{"PIPELINING", "8BITMIME"}, func(in string) string {
		switch {
		case strings.HasPrefix(in, "MAIL"):
			if strings.Count(in, "\r\n") != 3 {
				return "" // not pipelined: the client waits and the test times out
			}
			return "250 ok\r\n250 ok\r\n354 go on\r\n"
		case strings.HasSuffix(in, "\r\n.\r\n"):
			return "250 queued\r\n"
		}
		return ""
	})
	s := scriptedSender(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := s.Send(ctx, scriptedMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := reads()
	if len(got) != 2 {
		t.Fatalf("server read %d times, want 2: %q", len(got), got)
	}
	if want := "MAIL FROM:<status@crier.example> BODY=8BITMIME\r\nRCPT TO:<manager@care.example>\r\nDATA\r\n"; got[0] != want {
		t.Errorf("first write %q, want %q", got[0], want)
	}
	if !strings.Contains(got[1], "\r\n..leading dot\r\n") {
		t.Errorf("message %q: leading dot not doubled", got[1])
	}
}

func TestPipeliningServerThatAcceptsDataAfterRefusedRecipient(t *testing.T) {
	// A server should then refuse DATA (RFC 2920, section 3.2); this one
	// answers 354 anyway. The message is ended at once, the refusal reported, and the
	// session cleared with RSET and reused.
	url, reads := scriptedServer(t, []string{"PIPELINING"}, func(in string) string {
		switch {
		case strings.HasPrefix(in, "MAIL") && strings.Contains(in, "gone@"):
			return "250 ok\r\n550 5.1.1 no such user\r\n354 go on\r\n"
		case strings.HasPrefix(in, "MAIL"):
			return "250 ok\r\n250 ok\r\n354 go on\r\n"
		case in == ".\r\n":
			return "554 no valid recipients\r\n"
		case strings.HasPrefix(in, "RSET"):
			return "250 reset\r\n"
		case strings.HasSuffix(in, "\r\n.\r\n"):
			return "250 queued\r\n"
		}
		return "500 unexpected\r\n"
	})
	s := scriptedSender(t, url)
	m := scriptedMessage()
	m.To = "gone@care.example"
	_, err := s.Send(context.Background(), m)
	var pe *deliver.PermanentError
	if !errors.As(err, &pe) || pe.Code != "550" || !strings.Contains(err.Error(), "no such user") {
		t.Fatalf("Send to a refused recipient: %v, want a permanent 550", err)
	}
	if _, err := s.Send(context.Background(), scriptedMessage()); err != nil {
		t.Fatalf("next Send on the same connection: %v", err)
	}
	got := reads()
	want := []string{"", ".\r\n", "RSET\r\n", "", ""}
	if len(got) != len(want) || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("server reads %q, want MAIL…DATA, %q, %q, MAIL…DATA, message", got, want[1], want[2])
	}
}

func TestEightBitSafe(t *testing.T) {
	for body, want := range map[string]bool{
		"":                               true,
		"Café ✓\nline two\n":             true,
		strings.Repeat("x", maxLine):     true,
		strings.Repeat("x", maxLine+1):   false,
		"a\n" + strings.Repeat("é", 500): false, // 1,000 bytes on one line
		strings.Repeat("x\n", 2000):      true,
		"bare\rCR":                       false,
		"CRLF\r\n":                       false, // rendered text uses LF
		"NUL\x00":                        false,
		"bad UTF-8 \xff":                 false,
		strings.Repeat("y", 900) + "\n" + strings.Repeat("z", 999): false,
	} {
		if got := eightBitSafe(body); got != want {
			t.Errorf("eightBitSafe(%.20q… %d bytes) = %v, want %v", body, len(body), got, want)
		}
	}
}

// TestEightBitRecomposedForServerWithout8BITMIME: a message composed in
// 8bit because an earlier connection offered 8BITMIME goes as
// quoted-printable on a connection whose server does not.
func TestEightBitRecomposedForServerWithout8BITMIME(t *testing.T) {
	url, reads := scriptedServer(t, []string{"PIPELINING"}, func(in string) string {
		switch {
		case strings.HasPrefix(in, "MAIL"):
			return "250 ok\r\n250 ok\r\n354 go on\r\n"
		case strings.HasSuffix(in, "\r\n.\r\n"):
			return "250 queued\r\n"
		}
		return "500 unexpected\r\n"
	})
	s := scriptedSender(t, url)
	s.eightBit.Store(true)
	m := scriptedMessage()
	m.Text = "Café ✓\n"
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := reads()
	if len(got) != 2 {
		t.Fatalf("reads %q", got)
	}
	if strings.HasPrefix(got[0], "MAIL FROM:<status@crier.example> BODY") ||
		!strings.Contains(got[1], "Content-Transfer-Encoding: quoted-printable") || strings.Contains(got[1], "8bit") {
		t.Errorf("sent %q then %q, want no BODY=8BITMIME and a quoted-printable message", got[0], got[1])
	}
	if s.eightBit.Load() {
		t.Error("the sender still composes in 8bit after a connection without 8BITMIME")
	}
}

func TestChunkingSendsOneWritePerMessage(t *testing.T) {
	url, reads := scriptedServer(t, []string{"PIPELINING", "CHUNKING", "8BITMIME"}, func(in string) string {
		switch {
		case strings.HasPrefix(in, "MAIL") && strings.Contains(in, "gone@"):
			return "250 ok\r\n550 5.1.1 no such user\r\n503 5.5.1 no valid recipients\r\n250 reset\r\n"
		case strings.HasPrefix(in, "MAIL"):
			return "250 ok\r\n250 ok\r\n250 queued\r\n250 reset\r\n"
		}
		return "500 unexpected\r\n"
	})
	s := scriptedSender(t, url)
	s.eightBit.Store(true) // as after an earlier connection: the text goes as it is
	m := scriptedMessage()
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	gone := scriptedMessage()
	gone.To = "gone@care.example"
	_, err := s.Send(context.Background(), gone)
	var pe *deliver.PermanentError
	if !errors.As(err, &pe) || pe.Code != "550" {
		t.Fatalf("Send to a refused recipient: %v, want a permanent 550", err)
	}
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("Send after the refusal, on the same connection: %v", err)
	}
	got := reads()
	// RSET goes out with each transaction: the refusal costs no round trip.
	if len(got) != 3 {
		t.Fatalf("server reads %q, want three writes, one per message", got)
	}
	for _, w := range got {
		if !strings.HasSuffix(w, "\r\nRSET\r\n") || strings.Count(w, "RSET") != 1 {
			t.Fatalf("write %q: want one transaction ending with RSET", w)
		}
	}
	head, msg, ok := strings.Cut(strings.TrimSuffix(got[0], "RSET\r\n"), " LAST\r\n")
	const prefix = "MAIL FROM:<status@crier.example> BODY=8BITMIME\r\nRCPT TO:<manager@care.example>\r\nBDAT "
	if !ok || !strings.HasPrefix(head, prefix) {
		t.Fatalf("first write %q, want %q…", got[0], prefix)
	}
	if size := head[len(prefix):]; size != strconv.Itoa(len(msg)) {
		t.Errorf("BDAT %s, but %d bytes follow", size, len(msg))
	}
	if !strings.Contains(msg, "\r\ntext\r\n.leading dot\r\n") || strings.Contains(strings.ReplaceAll(msg, "\r\n", ""), "\n") {
		t.Errorf("message %q: want CRLF lines and no dot-stuffing", msg)
	}
}

func FuzzAppendCRLF(f *testing.F) {
	for _, s := range []string{"", "a", "a\n", "a\r\n", "\n\n", "\r\n.\r\n", "x\ry\n", "end without newline"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var b bytes.Buffer
		appendCRLF(&b, body)
		out := b.Bytes()
		if len(out) != crlfLen(body) {
			t.Fatalf("crlfLen(%q) = %d, appendCRLF wrote %d bytes", body, crlfLen(body), len(out))
		}
		if len(body) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("appendCRLF(%q) = %q: last line not ended", body, out)
		}
		for i, c := range out {
			if c == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("appendCRLF(%q) = %q: bare LF at %d", body, out, i)
			}
		}
		// Only CRs before LFs were added, and a final CRLF.
		want := bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
		if len(body) > 0 && body[len(body)-1] != '\n' {
			want = append(want, '\n')
		}
		if got := bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n")); !bytes.Equal(got, want) {
			t.Fatalf("appendCRLF(%q) = %q: content changed", body, out)
		}
	})
}
