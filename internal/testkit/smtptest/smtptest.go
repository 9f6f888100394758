// Package smtptest runs a real, scriptable SMTP server on the loopback
// interface for tests, built on github.com/emersion/go-smtp.
//
// A Server listens on 127.0.0.1 on a free port, keeps every accepted message
// in memory (or only counts them, see WithDiscard) and can be told to
// misbehave: answer RCPT or end-of-DATA with a chosen reply (RcptHook,
// DataHook), hold its replies until released (Block, Release), delay each
// reply (SetLatency), drop its connections (CloseConnections) or close every
// new connection at once (SetDown). With WithSTARTTLS or WithImplicitTLS it
// uses a self-signed certificate made at start, and ClientTLSConfig returns a
// *tls.Config that trusts it; WithAuth requires AUTH PLAIN.
//
// A reply with code 421 closes the connection right after it is sent, as a
// real server that is shutting down does.
//
// The server is closed by t.Cleanup; nothing needs to be stopped by hand.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// RcptHook decides the reply to one RCPT TO command. rcpt is the address as
// the client sent it (without angle brackets) and attempt counts the RCPT
// commands for that address on this server, starting at 1. A nil result
// accepts the recipient with 250.
type RcptHook func(rcpt string, attempt int) *smtp.SMTPError

// DataHook decides the reply at the end of DATA for a message that was
// received in full. A nil result accepts it with 250; any other reply means
// the message is not stored. With WithDiscard the Message holds only From
// and To.
type DataHook func(m Message) *smtp.SMTPError

// Option configures a Server at New.
type Option func(*options)

type options struct {
	discard     bool
	startTLS    bool
	implicitTLS bool
	user, pass  string
	authSet     bool
	latency     time.Duration
	rcptHook    RcptHook
	dataHook    DataHook
}

// WithDiscard makes the server count messages without keeping them (for
// benchmarks): Messages stays empty, Stats().Messages counts.
func WithDiscard() Option { return func(o *options) { o.discard = true } }

// WithSTARTTLS makes the server offer STARTTLS with a self-signed
// certificate; see ClientTLSConfig.
func WithSTARTTLS() Option { return func(o *options) { o.startTLS = true } }

// WithImplicitTLS makes the server speak TLS from the first byte (SMTPS, RFC
// 8314) with a self-signed certificate; see ClientTLSConfig.
func WithImplicitTLS() Option { return func(o *options) { o.implicitTLS = true } }

// WithAuth makes the server offer AUTH PLAIN and refuse MAIL FROM (502) until
// the client has authenticated with this username and password. Without TLS
// the server offers AUTH on the plain connection too.
func WithAuth(username, password string) Option {
	return func(o *options) { o.user, o.pass, o.authSet = username, password, true }
}

// WithLatency delays every reply to MAIL, RCPT and end-of-DATA by d.
func WithLatency(d time.Duration) Option { return func(o *options) { o.latency = d } }

// WithRcptHook sets the initial RcptHook (see SetRcptHook).
func WithRcptHook(h RcptHook) Option { return func(o *options) { o.rcptHook = h } }

// WithDataHook sets the initial DataHook (see SetDataHook).
func WithDataHook(h DataHook) Option { return func(o *options) { o.dataHook = h } }

// Message is one message the server accepted.
type Message struct {
	// From is the MAIL FROM address and To the RCPT TO addresses, without
	// angle brackets.
	From string
	To   []string
	// Data is the message as received (headers and body, CRLF line endings,
	// dot-stuffing removed).
	Data []byte
	// Header holds the parsed header fields, nil if Data did not parse.
	Header mail.Header
	// Conn is the sequence number (from 1) of the connection that carried
	// the message; TLS reports whether it was encrypted and AuthUser who
	// authenticated on it.
	Conn     int
	TLS      bool
	AuthUser string
}

// Subject returns the decoded (RFC 2047) Subject header.
func (m Message) Subject() string {
	s := m.Header.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// Part is one leaf MIME part of a message, with its body decoded from its
// Content-Transfer-Encoding.
type Part struct {
	// ContentType is the media type without parameters, e.g. "text/plain".
	ContentType string
	// Params are the Content-Type parameters, e.g. "charset".
	Params map[string]string
	Header textproto.MIMEHeader
	Body   string
}

// Parts returns the leaf parts of the message (the parts of a multipart
// message, depth first, or the body itself), decoded.
func (m Message) Parts() ([]Part, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return nil, fmt.Errorf("smtptest: parse message: %w", err)
	}
	return parts(textproto.MIMEHeader(msg.Header), msg.Body)
}

func parts(h textproto.MIMEHeader, body io.Reader) ([]Part, error) {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("smtptest: parse content type %q: %w", ct, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		var out []Part
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return nil, fmt.Errorf("smtptest: read part: %w", err)
			}
			sub, err := parts(p.Header, p)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	}
	switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("smtptest: decode %s part: %w", mt, err)
	}
	return []Part{{ContentType: mt, Params: params, Header: h, Body: string(b)}}, nil
}

// Stats counts what the server has seen since it started.
type Stats struct {
	// Connections is the number of connections accepted (not counting those
	// closed at once while down); Open is how many are open now; Refused
	// counts the connections closed at once while down.
	Connections int
	Open        int
	Refused     int
	// Mails and Rcpts count MAIL FROM and RCPT TO commands, whatever the
	// reply; Messages counts messages accepted at the end of DATA.
	Mails    int
	Rcpts    int
	Messages int
}

// Server is a running test SMTP server. Its methods are safe for concurrent
// use.
type Server struct {
	opts      options
	srv       *smtp.Server
	ln        net.Listener
	addr      *net.TCPAddr
	pool      *x509.CertPool
	done      chan struct{}
	served    chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	msgs     []Message
	attempts map[string]int
	rcptHook RcptHook
	dataHook DataHook
	latency  time.Duration
	gate     chan struct{}
	down     bool
	conns    map[*conn]struct{}

	nConns, nRefused, nMails, nRcpts, nMessages atomic.Int64
}

// New starts a server on 127.0.0.1 with a free port and closes it when the
// test ends. It fails the test if the server cannot start.
func New(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := &Server{
		done:     make(chan struct{}),
		served:   make(chan struct{}),
		attempts: make(map[string]int),
		conns:    make(map[*conn]struct{}),
	}
	for _, o := range opts {
		o(&s.opts)
	}
	if s.opts.startTLS && s.opts.implicitTLS {
		tb.Fatal("smtptest: WithSTARTTLS and WithImplicitTLS exclude each other")
	}
	s.rcptHook, s.dataHook, s.latency = s.opts.rcptHook, s.opts.dataHook, s.opts.latency

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "smtptest.localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.AllowInsecureAuth = true

	var tlsConf *tls.Config
	if s.opts.startTLS || s.opts.implicitTLS {
		cert, pool, err := newCertificate()
		if err != nil {
			tb.Fatalf("smtptest: %v", err)
		}
		s.pool = pool
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		srv.AllowInsecureAuth = false
	}
	if s.opts.startTLS {
		srv.TLSConfig = tlsConf
	}

	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("smtptest: listen: %v", err)
	}
	s.addr = nl.Addr().(*net.TCPAddr)
	var ln net.Listener = &listener{Listener: nl, s: s}
	if s.opts.implicitTLS {
		ln = tls.NewListener(ln, tlsConf)
	}
	s.srv, s.ln = srv, nl
	go func() {
		defer close(s.served)
		_ = srv.Serve(ln)
	}()
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server and drops every connection. It is called by
// t.Cleanup and may be called earlier; later calls do nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		_ = s.srv.Close()
		// go-smtp closes only the listeners Serve has registered: close
		// ours too, in case Serve has not started yet.
		_ = s.ln.Close()
		<-s.served
	})
}

// Addr returns the server's "127.0.0.1:port".
func (s *Server) Addr() string { return s.addr.String() }

// Host returns "127.0.0.1".
func (s *Server) Host() string { return s.addr.IP.String() }

// Port returns the port the server listens on.
func (s *Server) Port() int { return s.addr.Port }

// URL returns a CRIER_SMTP_URL for this server: smtp://127.0.0.1:PORT?tls=none
// for a plain server, smtp://… (STARTTLS) or smtps://… (implicit TLS) for the
// TLS variants, with the WithAuth credentials as userinfo.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.Addr()}
	switch {
	case s.opts.implicitTLS:
		u.Scheme = "smtps"
	case !s.opts.startTLS:
		u.RawQuery = "tls=none"
	}
	if s.opts.authSet {
		u.User = url.UserPassword(s.opts.user, s.opts.pass)
	}
	return u.String()
}

// CertPool returns a pool holding the server's self-signed certificate, nil
// without TLS.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// ClientTLSConfig returns a client configuration that trusts the server's
// certificate (valid for 127.0.0.1, ::1 and localhost), nil without TLS.
func (s *Server) ClientTLSConfig() *tls.Config {
	if s.pool == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12}
}

// Messages returns a copy of the accepted messages, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	copy(out, s.msgs)
	return out
}

// MessagesTo returns the accepted messages with rcpt among their recipients.
func (s *Server) MessagesTo(rcpt string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		for _, to := range m.To {
			if strings.EqualFold(to, rcpt) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	open := len(s.conns)
	s.mu.Unlock()
	return Stats{
		Connections: int(s.nConns.Load()),
		Open:        open,
		Refused:     int(s.nRefused.Load()),
		Mails:       int(s.nMails.Load()),
		Rcpts:       int(s.nRcpts.Load()),
		Messages:    int(s.nMessages.Load()),
	}
}

// Attempts returns how many RCPT TO commands named rcpt.
func (s *Server) Attempts(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[strings.ToLower(rcpt)]
}

// SetRcptHook replaces the RcptHook; nil accepts every recipient.
func (s *Server) SetRcptHook(h RcptHook) {
	s.mu.Lock()
	s.rcptHook = h
	s.mu.Unlock()
}

// SetDataHook replaces the DataHook; nil accepts every message.
func (s *Server) SetDataHook(h DataHook) {
	s.mu.Lock()
	s.dataHook = h
	s.mu.Unlock()
}

// SetLatency sets the delay before every reply to MAIL, RCPT and end-of-DATA.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// Block makes the server hold its replies to MAIL, RCPT and end-of-DATA until
// Release (or Close). Connections and greetings still go through.
func (s *Server) Block() {
	s.mu.Lock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
	s.mu.Unlock()
}

// Release lets held and future replies go.
func (s *Server) Release() {
	s.mu.Lock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
	s.mu.Unlock()
}

// SetDown switches the server down (true): every open connection is closed
// and every new one is closed right after it is accepted, before the
// greeting, so clients see the connection reset or end. SetDown(false) brings
// it back.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
	if down {
		s.CloseConnections()
	}
}

// CloseConnections closes every open connection without a reply, as a server
// that restarts or drops idle clients does.
func (s *Server) CloseConnections() {
	s.mu.Lock()
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// pause waits while the server is blocked, then for the configured latency.
func (s *Server) pause() {
	s.mu.Lock()
	gate, lat := s.gate, s.latency
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-s.done:
		}
	}
	if lat > 0 {
		t := time.NewTimer(lat)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.done:
		}
	}
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	tracked, _ := nc.(*conn)
	se := &session{s: s, c: c, tracked: tracked}
	if s.opts.authSet {
		return &authSession{session: se}, nil
	}
	return se, nil
}

// listener counts and tracks accepted connections and closes them at once
// while the server is down.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.s
		s.mu.Lock()
		if s.down {
			s.mu.Unlock()
			s.nRefused.Add(1)
			_ = nc.Close()
			continue
		}
		c := &conn{Conn: nc, s: s, id: int(s.nConns.Add(1))}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		return c, nil
	}
}

// conn is an accepted connection; it can close itself right after the next
// reply is written (for 421).
type conn struct {
	net.Conn
	s          *Server
	id         int
	closeAfter atomic.Bool
	closeOnce  sync.Once
	closeErr   error
}

func (c *conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.closeAfter.Load() {
		_ = c.Close()
	}
	return n, err
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// session is one SMTP session (a new one starts after STARTTLS).
type session struct {
	s        *Server
	c        *smtp.Conn
	tracked  *conn
	authUser string
	from     string
	rcpts    []string
}

// reply passes err on as the SMTP reply, arranging for a 421 to close the
// connection once it is written.
func (se *session) reply(err *smtp.SMTPError) error {
	if err == nil {
		return nil
	}
	if err.Code == 421 && se.tracked != nil {
		se.tracked.closeAfter.Store(true)
	}
	return err
}

func (se *session) Reset() {
	se.from = ""
	se.rcpts = nil
}

func (se *session) Logout() error { return nil }

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	se.s.nMails.Add(1)
	se.s.pause()
	if se.s.opts.authSet && se.authUser == "" {
		return smtp.ErrAuthRequired
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := se.s
	s.nRcpts.Add(1)
	s.pause()
	s.mu.Lock()
	key := strings.ToLower(to)
	s.attempts[key]++
	n, hook := s.attempts[key], s.rcptHook
	s.mu.Unlock()
	if hook != nil {
		if err := hook(to, n); err != nil {
			return se.reply(err)
		}
	}
	se.rcpts = append(se.rcpts, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	s := se.s
	if s.opts.discard {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		s.pause()
		s.mu.Lock()
		hook := s.dataHook
		s.mu.Unlock()
		if hook != nil {
			if err := hook(Message{From: se.from, To: se.rcpts}); err != nil {
				return se.reply(err)
			}
		}
		s.nMessages.Add(1)
		return nil
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{
		From:     se.from,
		To:       append([]string(nil), se.rcpts...),
		Data:     data,
		AuthUser: se.authUser,
	}
	if se.tracked != nil {
		m.Conn = se.tracked.id
	}
	_, m.TLS = se.c.TLSConnectionState()
	if pm, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		m.Header = pm.Header
	}
	s.pause()
	s.mu.Lock()
	hook := s.dataHook
	s.mu.Unlock()
	if hook != nil {
		if err := hook(m); err != nil {
			return se.reply(err)
		}
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	s.nMessages.Add(1)
	return nil
}

// authSession adds AUTH PLAIN to a session.
type authSession struct {
	*session
}

func (as *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (as *authSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return smtp.ErrAuthFailed
		}
		if username != as.s.opts.user || password != as.s.opts.pass {
			return smtp.ErrAuthFailed
		}
		as.authUser = username
		return nil
	}), nil
}

// ReplyError builds an SMTP reply for hooks, with the enhanced status code
// derived from code (X.0.0) unless text starts with one ("5.1.1 no such
// user").
func ReplyError(code int, text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCodeNotSet, Message: text}
	if first, rest, ok := strings.Cut(text, " "); ok {
		if ec, ok := parseEnhanced(first); ok {
			e.EnhancedCode, e.Message = ec, rest
		}
	}
	return e
}

func parseEnhanced(s string) (smtp.EnhancedCode, bool) {
	f := strings.Split(s, ".")
	if len(f) != 3 {
		return smtp.EnhancedCode{}, false
	}
	var ec smtp.EnhancedCode
	for i, p := range f {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return smtp.EnhancedCode{}, false
		}
		ec[i] = n
	}
	return ec, true
}
