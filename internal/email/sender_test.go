package email_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/testkit/smtptest"
)

// setup starts a test server with opts and a Sender for it; edit adjusts
// the sender's configuration.
func setup(t testing.TB, edit func(*email.Config), opts ...smtptest.Option) (*smtptest.Server, *email.Sender) {
	t.Helper()
	srv := smtptest.New(t, opts...)
	settings, err := email.ParseURL(srv.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", srv.URL(), err)
	}
	cfg := email.Config{
		Settings:    settings,
		From:        "Example status <status@example.org>",
		TLSConfig:   srv.ClientTLSConfig(),
		HELO:        "crier.test",
		SendTimeout: 5 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := email.New(cfg)
	if err != nil {
		t.Fatalf("email.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return srv, s
}

// transactionModes runs f once for each way of sending a message (the test
// server offers PIPELINING and CHUNKING): BDAT, pipelined DATA, and one
// command at a time; mode edits the sender's configuration to choose.
func transactionModes(t *testing.T, f func(t *testing.T, mode func(*email.Config))) {
	t.Helper()
	for name, mode := range modes {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, mode)
		})
	}
}

var modes = map[string]func(*email.Config){
	"chunked":   func(*email.Config) {},
	"pipelined": func(c *email.Config) { c.Settings.NoChunking = true },
	"serial":    func(c *email.Config) { c.Settings.NoPipelining = true },
}

// message returns a realistic notification for delivery id to rcpt.
func message(id int64, rcpt string) deliver.Message {
	return deliver.Message{
		DeliveryID: id,
		Channel:    deliver.ChannelEmail,
		To:         rcpt,
		Subject:    "[Investigating] Atlas Device Synchronisation Issues",
		Text: "Some users are experiencing sync issues on Sync Pod A. Care homes on Pod A: " +
			"switch to Sync Pod B or use paper medication charts.\n\n13:35 Investigating — We are looking into it.\n",
		HTML: "<p>Some users are experiencing sync issues on <b>Sync Pod A</b>.</p>" +
			"<p>13:35 Investigating — We are looking into it. Café ✓</p>",
		MessageID:         fmt.Sprintf("delivery-%d.2025-11-10-atlas-sync-0001@crier.example.org", id),
		UnsubscribeURL:    fmt.Sprintf("https://status.example.org/unsubscribe/tok%d", id),
		UnsubscribeMailto: fmt.Sprintf("mailto:unsubscribe+tok%d@status.example.org", id),
	}
}

// wantChannelFault fails the test unless err is a *deliver.ChannelFault
// with code (and neither transient nor permanent for the delivery).
func wantChannelFault(t *testing.T, err error, code string) {
	t.Helper()
	var f *deliver.ChannelFault
	if !errors.As(err, &f) {
		t.Fatalf("error %v (%T), want *deliver.ChannelFault", err, err)
	}
	var te *deliver.TransientError
	if f.Code != code || deliver.IsPermanent(err) || errors.As(err, &te) {
		t.Errorf("ChannelFault %v: code %q, want %q, neither permanent nor transient", err, f.Code, code)
	}
}

func wantTransient(t *testing.T, err error, code string) *deliver.TransientError {
	t.Helper()
	var te *deliver.TransientError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T), want *deliver.TransientError", err, err)
	}
	if te.Code != code {
		t.Errorf("TransientError.Code = %q, want %q (%v)", te.Code, code, err)
	}
	if deliver.IsPermanent(err) {
		t.Errorf("IsPermanent(%v) = true", err)
	}
	return te
}

func wantPermanent(t *testing.T, err error, code string) *deliver.PermanentError {
	t.Helper()
	var pe *deliver.PermanentError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want *deliver.PermanentError", err, err)
	}
	if pe.Code != code {
		t.Errorf("PermanentError.Code = %q, want %q (%v)", pe.Code, code, err)
	}
	return pe
}

func TestSendHeadersAndParts(t *testing.T) {
	t.Parallel()
	transactionModes(t, func(t *testing.T, mode func(*email.Config)) {
		srv, s := setup(t, mode)
		m := message(42, "Manager <manager@carehome.example>")
		id, err := s.Send(context.Background(), m)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if id != m.MessageID {
			t.Errorf("provider id %q, want the Message-ID %q", id, m.MessageID)
		}
		msgs := srv.Messages()
		if len(msgs) != 1 {
			t.Fatalf("%d messages arrived, want 1", len(msgs))
		}
		got := msgs[0]
		if got.From != "status@example.org" || len(got.To) != 1 || got.To[0] != "manager@carehome.example" {
			t.Errorf("envelope from %q to %q", got.From, got.To)
		}
		h := got.Header
		for name, want := range map[string]string{
			"From":                  `"Example status" <status@example.org>`,
			"To":                    `"Manager" <manager@carehome.example>`,
			"Message-Id":            "<" + m.MessageID + ">",
			"List-Unsubscribe":      "<https://status.example.org/unsubscribe/tok42>, <mailto:unsubscribe+tok42@status.example.org>",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
			"List-Id":               "<incidents.example.org>",
			"Auto-Submitted":        "auto-generated",
			"Mime-Version":          "1.0",
		} {
			// net/mail keeps folded lines as they are; unfold for comparing.
			v := strings.ReplaceAll(h.Get(name), "\r\n", "")
			if v != want {
				t.Errorf("%s: %q, want %q", name, v, want)
			}
		}
		if got.Subject() != m.Subject {
			t.Errorf("Subject %q, want %q", got.Subject(), m.Subject)
		}
		if d, err := h.Date(); err != nil || time.Since(d) > time.Minute {
			t.Errorf("Date %q: %v", h.Get("Date"), err)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative;") {
			t.Errorf("Content-Type %q, want multipart/alternative", ct)
		}
		parts, err := got.Parts()
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) != 2 {
			t.Fatalf("%d parts, want 2", len(parts))
		}
		for i, want := range []struct{ ct, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
			p := parts[i]
			if p.ContentType != want.ct || !strings.EqualFold(p.Params["charset"], "utf-8") ||
				p.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
				t.Errorf("part %d: %s %v %s", i, p.ContentType, p.Params, p.Header.Get("Content-Transfer-Encoding"))
			}
			if strings.ReplaceAll(p.Body, "\r\n", "\n") != want.body {
				t.Errorf("part %d body %q, want %q", i, p.Body, want.body)
			}
		}
	})
}

// TestEightBitOnceTheServerOffersIt: the first message goes before any
// connection says what the server takes, so it is quoted-printable; the
// next ones are 8bit (the test server offers 8BITMIME), except a part with
// a line too long for SMTP, and arrive the same.
func TestEightBitOnceTheServerOffersIt(t *testing.T) {
	t.Parallel()
	transactionModes(t, func(t *testing.T, mode func(*email.Config)) {
		srv, s := setup(t, mode)
		long := message(3, "a@example.org")
		long.HTML = "<p>" + strings.Repeat("Sync Pod A – ", 100) + "</p>"
		want := []struct {
			m          deliver.Message
			text, html string
		}{
			{message(1, "a@example.org"), "quoted-printable", "quoted-printable"},
			{message(2, "a@example.org"), "8bit", "8bit"},
			{long, "8bit", "quoted-printable"},
		}
		for i, w := range want {
			if _, err := s.Send(context.Background(), w.m); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			msgs := srv.Messages()
			if len(msgs) != i+1 {
				t.Fatalf("%d messages arrived, want %d", len(msgs), i+1)
			}
			parts, err := msgs[i].Parts()
			if err != nil || len(parts) != 2 {
				t.Fatalf("message %d: %d parts, %v", i, len(parts), err)
			}
			for j, p := range parts {
				enc, body := w.text, w.m.Text
				if j == 1 {
					enc, body = w.html, w.m.HTML
				}
				if got := p.Header.Get("Content-Transfer-Encoding"); got != enc {
					t.Errorf("message %d part %d: Content-Transfer-Encoding %q, want %q", i, j, got, enc)
				}
				if strings.ReplaceAll(p.Body, "\r\n", "\n") != body {
					t.Errorf("message %d part %d body %q, want %q", i, j, p.Body, body)
				}
			}
		}
	})
}

func TestSendTextOnlyWithoutUnsubscribe(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, func(c *email.Config) { c.ListID = "Status <status-list.example.org>" })
	m := message(1, "a@example.org")
	m.HTML, m.UnsubscribeURL, m.UnsubscribeMailto = "", "", ""
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := srv.Messages()[0]
	if v := got.Header.Get("List-Unsubscribe") + got.Header.Get("List-Unsubscribe-Post"); v != "" {
		t.Errorf("unsubscribe headers %q without targets", v)
	}
	if v := got.Header.Get("List-Id"); v != "Status <status-list.example.org>" {
		t.Errorf("List-Id %q", v)
	}
	parts, err := got.Parts()
	if err != nil || len(parts) != 1 || parts[0].ContentType != "text/plain" {
		t.Errorf("parts %+v, %v; want one text/plain", parts, err)
	}
}

func TestSubjectCannotInjectHeaders(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, nil)
	m := message(7, "a@example.org")
	m.Subject = "Sync Pod A down\r\nBcc: victim@example.net\r\n\r\nbody?\nX-Evil: 1"
	if _, err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := srv.Messages()[0]
	if v := got.Header.Get("Bcc") + got.Header.Get("X-Evil"); v != "" {
		t.Errorf("injected header arrived: %q", v)
	}
	if len(got.To) != 1 {
		t.Errorf("recipients %q", got.To)
	}
	if want := "Sync Pod A down Bcc: victim@example.net body? X-Evil: 1"; got.Subject() != want {
		t.Errorf("Subject %q, want %q", got.Subject(), want)
	}
}

func TestInvalidMessagesFailPermanentlyWithoutSending(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, nil)
	for name, edit := range map[string]func(*deliver.Message){
		"no at":             func(m *deliver.Message) { m.To = "not-an-address" },
		"empty":             func(m *deliver.Message) { m.To = "" },
		"crlf in address":   func(m *deliver.Message) { m.To = "a@example.org\r\nRCPT TO:<b@example.org>" },
		"no body":           func(m *deliver.Message) { m.Text, m.HTML = "", "" },
		"bad message id":    func(m *deliver.Message) { m.MessageID = "a b@example.org" },
		"unsubscribe crlf":  func(m *deliver.Message) { m.UnsubscribeURL = "https://x.example/\r\nBcc: y@example.org" },
		"unsubscribe ftp":   func(m *deliver.Message) { m.UnsubscribeURL = "ftp://x.example/u" },
		"unsubscribe angle": func(m *deliver.Message) { m.UnsubscribeMailto = "mailto:a>b@example.org" },
	} {
		t.Run(name, func(t *testing.T) {
			m := message(1, "a@example.org")
			edit(&m)
			_, err := s.Send(context.Background(), m)
			wantPermanent(t, err, "")
			if !errors.Is(err, email.ErrInvalidMessage) {
				t.Errorf("%v does not wrap ErrInvalidMessage", err)
			}
		})
	}
	if st := srv.Stats(); st.Connections != 0 {
		t.Errorf("%d connections for invalid messages", st.Connections)
	}
}

func TestMissingMessageIDIsDerived(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, nil)
	m := message(99, "a@example.org")
	m.MessageID = ""
	id, err := s.Send(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if id != "delivery-99@example.org" || srv.Messages()[0].Header.Get("Message-Id") != "<delivery-99@example.org>" {
		t.Errorf("Message-ID %q", id)
	}
}

func TestTransientReplyThenRecovery(t *testing.T) {
	t.Parallel()
	transactionModes(t, func(t *testing.T, mode func(*email.Config)) {
		for _, tc := range []struct {
			code      int
			text      string
			wantConns int // 421 closes the connection; 451 leaves it usable
		}{
			{421, "4.3.2 service shutting down", 2},
			{451, "4.3.0 local error, try again", 1},
		} {
			t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
				t.Parallel()
				srv, s := setup(t, mode, smtptest.WithRcptHook(func(_ string, n int) *smtp.SMTPError {
					if n == 1 {
						return smtptest.ReplyError(tc.code, tc.text)
					}
					return nil
				}))
				_, err := s.Send(context.Background(), message(1, "a@example.org"))
				wantTransient(t, err, fmt.Sprint(tc.code))
				if !strings.Contains(err.Error(), tc.text) {
					t.Errorf("error %q lost the server's text %q", err, tc.text)
				}
				if _, err := s.Send(context.Background(), message(1, "a@example.org")); err != nil {
					t.Fatalf("second send: %v", err)
				}
				if st := srv.Stats(); st.Messages != 1 || st.Connections != tc.wantConns {
					t.Errorf("Stats %+v, want 1 message over %d connections", st, tc.wantConns)
				}
			})
		}
	})
}

// refuse makes the test server refuse rcpt with 550 5.1.1.
func refuse(rcpt string) smtptest.Option {
	return smtptest.WithRcptHook(func(r string, _ int) *smtp.SMTPError {
		if r == rcpt {
			return smtptest.ReplyError(550, "5.1.1 mailbox unavailable")
		}
		return nil
	})
}

func TestRejectedRecipientFailsOnlyItself(t *testing.T) {
	t.Parallel()
	transactionModes(t, func(t *testing.T, mode func(*email.Config)) {
		const bad = "left@carehome.example"
		srv, s := setup(t, func(c *email.Config) { mode(c); c.PoolSize = 3 },
			refuse(bad))
		const n = 30
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				rcpt := fmt.Sprintf("manager%d@carehome.example", i)
				if i%10 == 5 {
					rcpt = bad
				}
				_, errs[i] = s.Send(context.Background(), message(int64(i), rcpt))
			})
		}
		wg.Wait()
		for i, err := range errs {
			if i%10 != 5 {
				if err != nil {
					t.Errorf("send %d: %v", i, err)
				}
				continue
			}
			pe := wantPermanent(t, err, "550")
			if !strings.Contains(pe.Error(), "5.1.1 mailbox unavailable") || !strings.Contains(pe.Error(), bad) {
				t.Errorf("error %q lacks the server's text or the address", pe)
			}
		}
		st := srv.Stats()
		if st.Messages != n-3 || len(srv.MessagesTo(bad)) != 0 {
			t.Errorf("Stats %+v, want %d messages", st, n-3)
		}
		if st.Connections > 3 {
			t.Errorf("%d connections: a rejected recipient should not cost its connection", st.Connections)
		}
	})
}

func TestRejectedAtEndOfData(t *testing.T) {
	t.Parallel()
	transactionModes(t, func(t *testing.T, mode func(*email.Config)) {
		srv, s := setup(t, mode, smtptest.WithDataHook(func(m smtptest.Message) *smtp.SMTPError {
			if m.To[0] == "spam@example.org" {
				return smtptest.ReplyError(554, "5.7.1 message refused")
			}
			return nil
		}))
		_, err := s.Send(context.Background(), message(1, "spam@example.org"))
		wantPermanent(t, err, "554")
		if _, err := s.Send(context.Background(), message(2, "ok@example.org")); err != nil {
			t.Fatal(err)
		}
		if st := srv.Stats(); st.Connections != 1 || st.Messages != 1 {
			t.Errorf("Stats %+v", st)
		}
	})
}

func TestServerDown(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, nil)
	if _, err := s.Send(context.Background(), message(1, "a@example.org")); err != nil {
		t.Fatal(err)
	}
	srv.SetDown(true)
	_, err := s.Send(context.Background(), message(2, "a@example.org"))
	wantTransient(t, err, "")
	srv.SetDown(false)
	if _, err := s.Send(context.Background(), message(3, "a@example.org")); err != nil {
		t.Fatalf("after the server came back: %v", err)
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	settings, err := email.ParseURL("smtp://" + addr + "?tls=none")
	if err != nil {
		t.Fatal(err)
	}
	s, err := email.New(email.Config{Settings: settings, From: "status@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Send(context.Background(), message(1, "a@example.org"))
	wantTransient(t, err, "")
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("error %v does not carry the *net.OpError", err)
	}
}

// TestSTARTTLSRequiredButNotOffered also pins go-mail's untyped error for
// it, which noSTARTTLS recognises by its text.
func TestSTARTTLSRequiredButNotOffered(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t) // plain server: no STARTTLS
	s, err := email.New(email.Config{
		Settings: email.Settings{Host: srv.Host(), Port: srv.Port()}, // zero Security: STARTTLS
		From:     "status@example.org",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Send(context.Background(), message(1, "a@example.org"))
	wantChannelFault(t, err, "starttls")
	if !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("error %q does not name STARTTLS", err)
	}
	if st := srv.Stats(); st.Mails != 0 || st.Messages != 0 {
		t.Errorf("sent in plain text: %+v", st)
	}
	waitFor(t, "connection closed", func() bool { return srv.Stats().Open == 0 })
}

func TestSTARTTLSWithAuth(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, nil, smtptest.WithSTARTTLS(), smtptest.WithAuth("crier", "s3cret:/@"))
	if _, err := s.Send(context.Background(), message(1, "a@example.org")); err != nil {
		t.Fatal(err)
	}
	got := srv.Messages()[0]
	if !got.TLS || got.AuthUser != "crier" {
		t.Errorf("TLS=%v AuthUser=%q", got.TLS, got.AuthUser)
	}
}

func TestWrongPasswordIsAChannelFault(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.WithSTARTTLS(), smtptest.WithAuth("crier", "right"))
	s, err := email.New(email.Config{
		Settings:  email.Settings{Host: srv.Host(), Port: srv.Port(), Username: "crier", Password: "wrong"},
		From:      "status@example.org",
		TLSConfig: srv.ClientTLSConfig(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Send(context.Background(), message(1, "a@example.org"))
	wantChannelFault(t, err, "535")
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q shows the password", err)
	}
}

func TestUntrustedCertificate(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t, smtptest.WithSTARTTLS())
	s, err := email.New(email.Config{
		Settings: email.Settings{Host: srv.Host(), Port: srv.Port()},
		From:     "status@example.org",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Send(context.Background(), message(1, "a@example.org"))
	wantChannelFault(t, err, "tls")
	if st := srv.Stats(); st.Mails != 0 {
		t.Errorf("sent over an unverified connection: %+v", st)
	}
}

func TestImplicitTLS(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, nil, smtptest.WithImplicitTLS(), smtptest.WithAuth("crier", "pw"))
	for i := range 3 {
		if _, err := s.Send(context.Background(), message(int64(i), "a@example.org")); err != nil {
			t.Fatal(err)
		}
	}
	if st := srv.Stats(); st.Messages != 3 || st.Connections != 1 {
		t.Errorf("Stats %+v", st)
	}
	if m := srv.Messages()[0]; !m.TLS || m.AuthUser != "crier" {
		t.Errorf("TLS=%v AuthUser=%q", m.TLS, m.AuthUser)
	}
}

func TestPoolReusesAtMostPoolSizeConnections(t *testing.T) {
	t.Parallel()
	const pool, n, workers = 4, 200, 16
	srv, s := setup(t, func(c *email.Config) { c.PoolSize = pool }, smtptest.WithLatency(time.Millisecond))
	var maxOpen atomic.Int64
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if _, err := s.Send(context.Background(), message(int64(i), fmt.Sprintf("m%d@example.org", i))); err != nil {
					t.Errorf("send %d: %v", i, err)
				}
				if o := int64(srv.Stats().Open); o > maxOpen.Load() {
					maxOpen.Store(o)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	st := srv.Stats()
	if st.Messages != n {
		t.Errorf("%d messages arrived, want %d", st.Messages, n)
	}
	if st.Connections > pool || maxOpen.Load() > pool {
		t.Errorf("%d connections (%d open at once), want at most %d", st.Connections, maxOpen.Load(), pool)
	}
	if st.Mails != n {
		t.Errorf("%d MAIL commands for %d messages", st.Mails, n)
	}
}

func TestIdleConnectionsAreClosedAndReplaced(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, func(c *email.Config) { c.IdleTimeout = 100 * time.Millisecond })
	if _, err := s.Send(context.Background(), message(1, "a@example.org")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "idle connection closed", func() bool { return srv.Stats().Open == 0 })
	if _, err := s.Send(context.Background(), message(2, "a@example.org")); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.Connections != 2 || st.Messages != 2 {
		t.Errorf("Stats %+v, want 2 messages over 2 connections", st)
	}
}

func TestConnectionDroppedByServerIsReplaced(t *testing.T) {
	t.Parallel()
	transactionModes(t, func(t *testing.T, mode func(*email.Config)) {
		srv, s := setup(t, mode)
		if _, err := s.Send(context.Background(), message(1, "a@example.org")); err != nil {
			t.Fatal(err)
		}
		srv.CloseConnections()
		waitFor(t, "connection dropped", func() bool { return srv.Stats().Open == 0 })
		if _, err := s.Send(context.Background(), message(2, "a@example.org")); err != nil {
			t.Fatalf("send after the server dropped the idle connection: %v", err)
		}
		if st := srv.Stats(); st.Connections != 2 || st.Messages != 2 {
			t.Errorf("Stats %+v", st)
		}
	})
}

func TestStalledServerTimesOut(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, func(c *email.Config) { c.SendTimeout = 200 * time.Millisecond })
	if _, err := s.Send(context.Background(), message(1, "a@example.org")); err != nil {
		t.Fatal(err)
	}
	srv.Block()
	start := time.Now()
	_, err := s.Send(context.Background(), message(2, "a@example.org"))
	wantTransient(t, err, "")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v is not a timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timed out after %v, SendTimeout is 200ms", d)
	}
	if n := srv.Stats().Connections; n != 1 {
		t.Errorf("%d connections: a timeout must not be retried on a new one", n)
	}
	srv.Release()
	if _, err := s.Send(context.Background(), message(3, "a@example.org")); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestContextCancelInterruptsSend(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, nil)
	srv.Block()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := s.Send(ctx, message(1, "a@example.org"))
	wantTransient(t, err, "")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap context.Canceled", err)
	}
	srv.Release()
	if _, err := s.Send(context.Background(), message(2, "a@example.org")); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	srv, s := setup(t, nil)
	if _, err := s.Send(context.Background(), message(1, "a@example.org")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitFor(t, "connection closed", func() bool { return srv.Stats().Open == 0 })
	_, err := s.Send(context.Background(), message(2, "a@example.org"))
	wantTransient(t, err, "")
	if !errors.Is(err, email.ErrClosed) {
		t.Errorf("error %v, want ErrClosed", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	settings := email.Settings{Host: "smtp.example.org", Port: 587}
	c := email.Config{Settings: settings, From: "crier <status@example.org>"}.WithDefaults()
	if c.PoolSize != email.DefaultPoolSize || c.SendTimeout != email.DefaultSendTimeout ||
		c.IdleTimeout != email.DefaultIdleTimeout || c.ListID != "<incidents.example.org>" {
		t.Errorf("WithDefaults() = %+v", c)
	}
	for name, cfg := range map[string]email.Config{
		"no host":      {Settings: email.Settings{Port: 25}, From: "a@example.org"},
		"no from":      {Settings: settings},
		"bad from":     {Settings: settings, From: "not an address"},
		"from crlf":    {Settings: settings, From: "a@example.org\r\nBcc: b@example.org"},
		"bad list id":  {Settings: settings, From: "a@example.org", ListID: "<a>\r\nX: y"},
		"negative":     {Settings: settings, From: "a@example.org", PoolSize: -1},
		"helo spaces":  {Settings: settings, From: "a@example.org", HELO: "a b"},
		"port":         {Settings: email.Settings{Host: "h", Port: 70000}, From: "a@example.org"},
		"non-ascii id": {Settings: settings, From: "a@example.org", ListID: "Störungen <s.example.org>"},
	} {
		if s, err := email.New(cfg); err == nil {
			_ = s.Close()
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A batch against a real SMTP server (go-smtp) in each transaction mode:
// every valid message arrives once, intact; an invalid address fails
// permanently without being sent; a refused recipient fails itself only,
// and what the server accepted after it in the same group counts.
func TestSendBatch(t *testing.T) {
	t.Parallel()
	transactionModes(t, func(t *testing.T, mode func(*email.Config)) {
		const bad = "left@carehome.example"
		srv, s := setup(t, func(c *email.Config) { mode(c); c.PoolSize = 2 },
			refuse(bad))
		ms := []deliver.Message{
			message(1, "manager1@carehome.example"),
			message(2, "not an address"),
			message(3, bad),
			message(4, "manager4@carehome.example"),
			message(5, "manager5@carehome.example"),
		}
		res := s.SendBatch(context.Background(), ms)
		if len(res) != len(ms) {
			t.Fatalf("%d results for %d messages", len(res), len(ms))
		}
		wantPermanent(t, res[1].Err, "")
		delivered := 0
		for _, i := range []int{0, 3, 4} {
			if res[i].Err != nil {
				// A later transaction of the group may only be retried.
				wantTransient(t, res[i].Err, res[i].Err.(*deliver.TransientError).Code)
				continue
			}
			delivered++
			if want := strings.Trim(ms[i].MessageID, "<>"); res[i].ProviderID != want {
				t.Errorf("message %d: provider id %q, want %q", i, res[i].ProviderID, want)
			}
			got := srv.MessagesTo(ms[i].To)
			if len(got) != 1 || !strings.Contains(got[0].Subject(), "Atlas Device Synchronisation") {
				t.Errorf("message %d arrived %d times", i, len(got))
			}
		}
		if res[0].Err != nil {
			t.Errorf("the first message, before any refusal: %v", res[0].Err)
		}
		wantPermanent(t, res[2].Err, "550")
		if st := srv.Stats(); st.Messages != delivered || len(srv.MessagesTo(bad)) != 0 {
			t.Errorf("Stats %+v, want %d messages", st, delivered)
		}
		// The pool still works.
		if _, err := s.Send(context.Background(), message(6, "manager6@carehome.example")); err != nil {
			t.Errorf("send after the batch: %v", err)
		}
	})
}
