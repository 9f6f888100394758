package smtptest_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/crier-dev/crier/internal/testkit/smtptest"
)

const testMessage = "From: a@example.org\r\nTo: b@example.org\r\nSubject: =?UTF-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=XX\r\n\r\n" +
	"--XX\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
	"caf=C3=A9\r\n" +
	"--XX\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<p>hi</p>\r\n--XX--\r\n"

func send(t *testing.T, c *smtp.Client, to string) error {
	t.Helper()
	if err := c.Mail("a@example.org", nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		_ = c.Reset()
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(testMessage)); err != nil {
		return err
	}
	return w.Close()
}

func dial(t *testing.T, s *smtptest.Server) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// go-smtp's client reads the greeting lazily: make sure the server
	// has accepted the connection.
	if err := c.Hello("client.test"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

func TestStoresMessages(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t)
	if !strings.HasPrefix(s.URL(), "smtp://127.0.0.1:") || !strings.HasSuffix(s.URL(), "?tls=none") {
		t.Errorf("URL() = %q", s.URL())
	}
	c := dial(t, s)
	if err := send(t, c, "b@example.org"); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "a@example.org" || len(m.To) != 1 || m.To[0] != "b@example.org" || m.Conn != 1 || m.TLS {
		t.Errorf("message envelope = %+v", m)
	}
	if got := m.Subject(); got != "Grüße" {
		t.Errorf("Subject() = %q", got)
	}
	parts, err := m.Parts()
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[0].ContentType != "text/plain" || parts[0].Body != "café" ||
		parts[1].ContentType != "text/html" || parts[1].Body != "<p>hi</p>" {
		t.Errorf("Parts() = %+v", parts)
	}
	if got := len(s.MessagesTo("B@example.org")); got != 1 {
		t.Errorf("MessagesTo = %d messages", got)
	}
	st := s.Stats()
	if st.Connections != 1 || st.Open != 1 || st.Mails != 1 || st.Rcpts != 1 || st.Messages != 1 {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestDiscard(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t, smtptest.WithDiscard())
	c := dial(t, s)
	for range 3 {
		if err := send(t, c, "b@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("kept %d messages", n)
	}
	if n := s.Stats().Messages; n != 3 {
		t.Errorf("counted %d messages, want 3", n)
	}
}

func TestRcptHook(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t, smtptest.WithRcptHook(func(rcpt string, n int) *smtp.SMTPError {
		switch {
		case rcpt == "bad@example.org":
			return smtptest.ReplyError(550, "5.1.1 no such user")
		case rcpt == "busy@example.org" && n <= 2:
			return smtptest.ReplyError(451, "4.3.0 try later")
		}
		return nil
	}))
	c := dial(t, s)
	var se *smtp.SMTPError
	if err := send(t, c, "bad@example.org"); !errors.As(err, &se) || se.Code != 550 ||
		se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || se.Message != "no such user" {
		t.Errorf("bad recipient: %v", err)
	}
	for i := 1; i <= 3; i++ {
		err := send(t, c, "busy@example.org")
		if i <= 2 && (!errors.As(err, &se) || se.Code != 451) {
			t.Errorf("attempt %d: %v, want 451", i, err)
		}
		if i == 3 && err != nil {
			t.Errorf("attempt 3: %v", err)
		}
	}
	if got := s.Attempts("busy@example.org"); got != 3 {
		t.Errorf("Attempts = %d", got)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

func Test421ClosesConnection(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t, smtptest.WithRcptHook(func(string, int) *smtp.SMTPError {
		return smtptest.ReplyError(421, "4.3.2 shutting down")
	}))
	c := dial(t, s)
	var se *smtp.SMTPError
	if err := send(t, c, "b@example.org"); !errors.As(err, &se) || se.Code != 421 {
		t.Fatalf("got %v, want 421", err)
	}
	if err := c.Noop(); err == nil {
		t.Error("connection still usable after 421")
	}
	waitFor(t, func() bool { return s.Stats().Open == 0 })
}

func TestDataHook(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t, smtptest.WithDataHook(func(m smtptest.Message) *smtp.SMTPError {
		if m.Subject() == "Grüße" {
			return smtptest.ReplyError(554, "5.6.0 rejected")
		}
		return nil
	}))
	var se *smtp.SMTPError
	if err := send(t, dial(t, s), "b@example.org"); !errors.As(err, &se) || se.Code != 554 {
		t.Errorf("got %v, want 554", err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

func TestDown(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t)
	c := dial(t, s)
	s.SetDown(true)
	if err := c.Noop(); err == nil {
		t.Error("open connection survived SetDown")
	}
	if c, err := smtp.Dial(s.Addr()); err == nil {
		// go-smtp reads the greeting on first use.
		if err := c.Noop(); err == nil {
			t.Error("connection usable while down")
		}
		_ = c.Close()
	}
	s.SetDown(false)
	if err := send(t, dial(t, s), "b@example.org"); err != nil {
		t.Errorf("after SetDown(false): %v", err)
	}
	if st := s.Stats(); st.Refused != 1 || st.Connections != 2 {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestBlockAndLatency(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t, smtptest.WithLatency(30*time.Millisecond))
	c := dial(t, s)
	s.Block()
	done := make(chan error, 1)
	go func() { done <- c.Mail("a@example.org", nil) }()
	select {
	case err := <-done:
		t.Fatalf("MAIL answered while blocked: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	start := time.Now()
	s.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Errorf("reply after %v, want the 30ms latency", d)
	}
}

func TestSTARTTLSAndAuth(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t, smtptest.WithSTARTTLS(), smtptest.WithAuth("user", "p@ss"))
	if !strings.HasPrefix(s.URL(), "smtp://user:p%40ss@127.0.0.1:") || strings.Contains(s.URL(), "tls=") {
		t.Errorf("URL() = %q", s.URL())
	}
	c, err := smtp.DialStartTLS(s.Addr(), s.ClientTLSConfig())
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Mail("a@example.org", nil); err == nil {
		t.Error("MAIL accepted before AUTH")
	}
	if err := c.Auth(sasl.NewPlainClient("", "user", "wrong")); err == nil {
		t.Error("wrong password accepted")
	}
	if err := c.Auth(sasl.NewPlainClient("", "user", "p@ss")); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := send(t, c, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	m := s.Messages()[0]
	if !m.TLS || m.AuthUser != "user" {
		t.Errorf("TLS=%v AuthUser=%q", m.TLS, m.AuthUser)
	}
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t, smtptest.WithImplicitTLS())
	if !strings.HasPrefix(s.URL(), "smtps://127.0.0.1:") {
		t.Errorf("URL() = %q", s.URL())
	}
	if _, err := smtp.DialTLS(s.Addr(), &tls.Config{MinVersion: tls.VersionTLS12}); err == nil {
		t.Error("certificate trusted without the test pool")
	}
	c, err := smtp.DialTLS(s.Addr(), s.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := send(t, c, "b@example.org"); err != nil {
		t.Fatal(err)
	}
	if !s.Messages()[0].TLS {
		t.Error("message not marked TLS")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
