// Package email sends rendered notifications by SMTP through a pool of
// persistent connections.
//
// A Sender keeps up to Config.PoolSize connections to one SMTP server (the
// CRIER_SMTP_URL, see ParseURL) and sends each message as one transaction
// (MAIL, RCPT, then DATA or BDAT) on a free connection, many messages per
// connection. go-mail (github.com/wneessen/go-mail) opens the connections
// (TLS policy, STARTTLS, AUTH, EHLO) and composes the messages that need
// quoted-printable; a message whose parts all go in 8bit is written by
// composeLean with the same fields and structure, ten times faster (see
// lean.go). The transaction is driven on go-mail's smtp.Client and its
// textproto connection, so that the server's replies arrive as
// *textproto.Error with their codes (go-mail's *SendError has no Unwrap),
// and so that no NOOP precedes and no RSET follows each message. How many
// round trips a message takes depends on what the server offers:
//
//   - PIPELINING and CHUNKING (RFC 2920, 3030): MAIL, RCPT and "BDAT n LAST"
//     with the message, and RSET, in one write, the four replies in one
//     read: 1;
//   - PIPELINING: MAIL, RCPT and DATA together, then the message: 2;
//   - neither: one command at a time, on go-mail's client: 4 (go-mail's
//     Client.Send with its defaults takes 6).
//
// Parts go in 8bit when the server offers 8BITMIME and their text allows,
// else quoted-printable. With CHUNKING every transaction ends with RSET in
// the same write (RFC 3030 requires it after a refused BDAT); otherwise RSET
// is sent only after a refused command, to clear the transaction. A server
// that dropped an idle connection is noticed at the next MAIL FROM, which
// is then sent again on a new connection.
//
// Failures come back as the retry policy's types (package deliver), decided
// by the reply code and the error types, not by the text (but for the one
// untyped error of go-mail's that noSTARTTLS recognises):
//
//   - a 5xx reply to RCPT, DATA, BDAT or at the end of DATA is a
//     *deliver.PermanentError with Code "550" (or whichever) and the
//     server's text in the wrapped error;
//   - a 5xx reply to MAIL FROM is a *deliver.ChannelFault with its code:
//     MAIL carries only crier's sender address, so the refusal is a fault of
//     crier's configuration or relay account, not of the recipient;
//   - a 4xx reply is a *deliver.TransientError with its code; 421 also
//     closes the connection;
//   - a timeout, a cancelled context, a refused, reset or closed connection
//     is a *deliver.TransientError without a code;
//   - failing to connect because of the configuration is a
//     *deliver.ChannelFault: a certificate that is not trusted, a server
//     that does not offer STARTTLS although the URL requires it (nothing is
//     ever sent in plain text then), a 5xx reply such as AUTH refused. The
//     channel pauses until the operator fixes it. Failing to connect
//     otherwise (unreachable, a 4xx, a timeout) is a *deliver.TransientError;
//   - a message that cannot be sent as given (no valid recipient address,
//     no body, a malformed Message-ID) is a *deliver.PermanentError wrapping
//     ErrInvalidMessage, and nothing is sent.
//
// A refused recipient fails that message only: the transaction is reset
// with RSET and the connection reused. A connection that failed in any other
// way is closed, and the next message gets a new one.
package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/crier-dev/crier/internal/deliver"
)

// quitTimeout bounds the polite QUIT when an idle connection is closed.
const quitTimeout = time.Second

// Sender sends email through a pool of SMTP connections. It is safe for
// concurrent use; Close it when done.
type Sender struct {
	cfg       Config
	from      *mail.Address
	envFrom   string // "<status@example.org>", the MAIL FROM argument
	fromField string // the From header's value
	bounds    *boundaries
	domain    string // of From, for generated Message-IDs
	tlsConfig *tls.Config
	// eightBit: the last connection opened offered 8BITMIME, so messages
	// are composed in 8bit where their text allows.
	eightBit atomic.Bool

	// slots holds one token per connection in use: at most PoolSize
	// messages are in flight, and a connection is only dialled by a holder
	// of a token when no idle one is left, so at most PoolSize connections
	// exist at any time.
	slots  chan struct{}
	stop   chan struct{}
	reaped chan struct{}
	bufs   sync.Pool

	mu     sync.Mutex
	idle   []*conn // least recently used first
	closed bool
}

// conn is one pooled SMTP connection.
type conn struct {
	client   *smtp.Client
	raw      net.Conn // what was dialled, for deadlines and closing
	lastUsed time.Time
	sent     int // messages sent on it
	// pipelining: the server offers PIPELINING (RFC 2920); chunking: it
	// offers CHUNKING (RFC 3030) as well; mailParams are the MAIL FROM
	// parameters its extensions call for.
	pipelining bool
	chunking   bool
	mailParams string
	eightBit   bool // the server offers 8BITMIME (RFC 6152)
}

// New returns a Sender for cfg after cfg.WithDefaults(). It checks the
// configuration but does not connect: the first Send does.
func New(cfg Config) (*Sender, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	from, _ := mail.ParseAddress(cfg.From) // checked by validate
	_, domain, _ := strings.Cut(from.Address, "@")
	tc := &tls.Config{}
	if cfg.TLSConfig != nil {
		tc = cfg.TLSConfig.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = cfg.Settings.Host
	}
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS12
	}
	if tc.ClientSessionCache == nil {
		// Resume TLS sessions when connections are replaced.
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(cfg.PoolSize)
	}
	s := &Sender{
		cfg:       cfg,
		from:      from,
		envFrom:   (&mail.Address{Address: from.Address}).String(),
		fromField: from.String(),
		bounds:    newBoundaries(),
		domain:    domain,
		tlsConfig: tc,
		slots:     make(chan struct{}, cfg.PoolSize),
		stop:      make(chan struct{}),
		reaped:    make(chan struct{}),
		bufs:      sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
	go s.reapLoop()
	return s, nil
}

// Send sends m to m.To and returns the Message-ID it carries (without angle
// brackets) as the provider id. See the package documentation for the
// errors; every error is a *deliver.PermanentError, a
// *deliver.TransientError or a *deliver.ChannelFault.
//
// Send waits for a free connection as long as ctx
// allows; the exchange with the server is bounded by Config.SendTimeout or
// ctx, whichever ends first. When the server closed a reused connection
// while it was idle, the message is sent again once on a new connection.
func (s *Sender) Send(ctx context.Context, m deliver.Message) (string, error) {
	o, err := s.prepare(m)
	if err != nil {
		return "", err
	}
	defer s.putBuffer(o.buf)
	pc, err := s.acquire(ctx)
	if err != nil {
		return "", deliver.Transient("", fmt.Errorf("email: send to %s: %w", o.to.Address, err))
	}
	defer s.release()

	for retried := false; ; retried = true {
		if pc == nil {
			if pc, err = s.dial(ctx); err != nil {
				return "", classifyConnect(fmt.Errorf("email: send to %s: %w", o.to.Address, err))
			}
		}
		if err := s.fit(&o, pc); err != nil {
			s.putIdle(pc)
			return "", err
		}
		st, keep, err := s.exchange(ctx, pc, o.rcpt, o.buf.Bytes())
		if err == nil {
			pc.sent++
		}
		reused := pc.sent > 0
		if keep {
			s.putIdle(pc)
		} else {
			discard(pc)
		}
		if err == nil {
			return o.id, nil
		}
		// A reused connection that fails at once at the first command, with
		// 421 or closed without a reply, was most likely closed by the
		// server while idle, so nothing was accepted: it is sent again at
		// once on a new connection. (With BDAT the message went out in
		// the same write as MAIL, so a server that took it and then died
		// before answering would get it twice; but so would it from the
		// retry that any transient failure gets.) A timeout is no such
		// sign and is not retried here.
		if ctx.Err() == nil && !retried && reused && st == stageMail && droppedWhileIdle(err) {
			pc = nil
			continue
		}
		return "", sendError(ctx, o.to.Address, st, err)
	}
}

// outgoing is a message composed for sending.
type outgoing struct {
	m        deliver.Message
	to       *mail.Address
	id       string // Message-ID, without angle brackets
	rcpt     string // the RCPT TO path
	buf      *bytes.Buffer
	used8bit bool
}

// prepare checks m and composes it into a pooled buffer, which the caller
// returns with putBuffer. The message is composed before a connection is
// taken, so that composing never holds one: in 8bit where it can be when
// the last connection opened offered 8BITMIME, as every connection to the
// same relay is expected to (see fit). Its errors are permanent.
func (s *Sender) prepare(m deliver.Message) (outgoing, error) {
	to, err := parseRecipient(m.To)
	if err != nil {
		return outgoing{}, deliver.Permanent("", err)
	}
	id, err := s.messageID(m)
	if err != nil {
		return outgoing{}, deliver.Permanent("", err)
	}
	o := outgoing{m: m, to: to, id: id, rcpt: (&mail.Address{Address: to.Address}).String(), buf: s.bufs.Get().(*bytes.Buffer)}
	o.buf.Reset()
	if o.used8bit, err = s.compose(o.buf, m, to, id, s.eightBit.Load(), true); err != nil {
		s.putBuffer(o.buf)
		return outgoing{}, deliver.Permanent("", err)
	}
	return o, nil
}

// fit composes o again in quoted-printable when it went in 8bit and pc's
// server does not take 8bit after all. Its error is permanent.
func (s *Sender) fit(o *outgoing, pc *conn) error {
	if !o.used8bit || pc.eightBit {
		return nil
	}
	o.buf.Reset()
	var err error
	if o.used8bit, err = s.compose(o.buf, o.m, o.to, o.id, false, true); err != nil {
		return deliver.Permanent("", err)
	}
	return nil
}

// sendError is the error of a transaction to address that failed at st
// with err: transient when ctx ended, else classified by the reply.
func sendError(ctx context.Context, address string, st stage, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return deliver.Transient("", fmt.Errorf("email: send to %s: %s: %w (%v)", address, st, cerr, err))
	}
	return classify(st, fmt.Errorf("email: send to %s: %s: %w", address, st, err))
}

// exchange runs one transaction on pc. keep reports whether pc can carry
// the next message: after success, or after a refused command that RSET
// cleared.
func (s *Sender) exchange(ctx context.Context, pc *conn, rcpt string, body []byte) (st stage, keep bool, err error) {
	stop, err := s.arm(ctx, pc)
	if err != nil {
		return stageMail, false, err
	}
	defer func() {
		if !stop() {
			keep = false
		}
	}()

	switch {
	case pc.chunking:
		// The transaction ends with RSET in the same write: after a
		// refusal the session is already cleared.
		scratch := s.bufs.Get().(*bytes.Buffer)
		g := s.chunkedGroup(pc, []string{rcpt}, [][]byte{body}, scratch)
		s.putBuffer(scratch)
		return g.sts[0], g.io == nil && !g.unclean && (g.errs[0] == nil || cleanRejection(g.errs[0])), g.errs[0]
	case pc.pipelining:
		st, err = s.pipelined(pc, rcpt, body)
	default:
		st, err = s.serial(pc, rcpt, body)
	}
	if err == nil {
		return st, true, nil
	}
	if st != stageBody && cleanRejection(err) {
		keep = pc.client.Reset() == nil
	}
	return st, keep, err
}

// arm bounds an exchange on pc by Config.SendTimeout and ctx. Cancellation
// interrupts blocked reads and writes; stop reports false if it fired, and
// the connection's deadline may then be changed behind the caller's back:
// it must not be reused.
func (s *Sender) arm(ctx context.Context, pc *conn) (stop func() bool, err error) {
	deadline := time.Now().Add(s.cfg.SendTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := pc.raw.SetDeadline(deadline); err != nil {
		return nil, err
	}
	return context.AfterFunc(ctx, func() { _ = pc.raw.SetDeadline(time.Unix(1, 0)) }), nil
}

// serial runs one transaction a command at a time, with go-mail's client,
// on a server that does not offer PIPELINING.
func (s *Sender) serial(pc *conn, rcpt string, body []byte) (st stage, err error) {
	st, err = stageMail, pc.client.Mail(s.envFrom)
	if err == nil {
		st, err = stageRcpt, pc.client.Rcpt(rcpt)
	}
	if err == nil {
		var w io.WriteCloser
		st = stageData
		if w, err = pc.client.Data(); err == nil {
			st = stageBody
			if _, err = w.Write(body); err == nil {
				st, err = stageEnd, w.Close()
			}
		}
	}
	return st, err
}

// acquire takes a slot and returns an idle connection that has not timed
// out, or nil when the caller must dial.
func (s *Sender) acquire(ctx context.Context) (*conn, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a connection: %w", context.Cause(ctx))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.slots
		return nil, ErrClosed
	}
	var pc *conn
	var expired []*conn
	now := time.Now()
	for len(s.idle) > 0 {
		last := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if now.Sub(last.lastUsed) < s.cfg.IdleTimeout {
			pc = last
			break
		}
		expired = append(expired, last)
	}
	s.mu.Unlock()
	for _, e := range expired {
		discard(e)
	}
	return pc, nil
}

// release gives the slot back; the connection is already idle or closed.
func (s *Sender) release() { <-s.slots }

// putIdle returns pc to the pool (or closes it when the sender is closed).
func (s *Sender) putIdle(pc *conn) {
	pc.lastUsed = time.Now()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		quit(pc)
		return
	}
	s.idle = append(s.idle, pc)
	s.mu.Unlock()
}

func (s *Sender) putBuffer(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		s.bufs.Put(b)
	}
}

// dial opens a connection with go-mail: TCP (and TLS for smtps), greeting,
// EHLO, STARTTLS when required, AUTH when a username is set.
func (s *Sender) dial(ctx context.Context) (*conn, error) {
	var h rawHolder
	st := s.cfg.Settings
	opts := []gomail.Option{
		gomail.WithPort(st.Port),
		gomail.WithTimeout(s.cfg.SendTimeout),
		gomail.WithTLSConfig(s.tlsConfig),
		gomail.WithDialContextFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := s.dialNet(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if !h.set(c) {
				_ = c.Close()
				return nil, context.Canceled
			}
			return c, nil
		}),
	}
	switch st.Security {
	case STARTTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case ImplicitTLS:
		// The dial function above does the TLS; WithSSL makes go-mail skip
		// STARTTLS.
		opts = append(opts, gomail.WithSSL())
	case NoTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.cfg.HELO != "" {
		opts = append(opts, gomail.WithHELO(s.cfg.HELO))
	}
	if st.Username != "" {
		opts = append(opts,
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1,
				gomail.SMTPAuthPlain, gomail.SMTPAuthLogin, gomail.SMTPAuthCramMD5),
			gomail.WithUsername(st.Username),
			gomail.WithPassword(st.Password),
		)
	}
	mc, err := gomail.NewClient(st.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("configure SMTP client: %w", err)
	}
	stop := context.AfterFunc(ctx, h.interrupt)
	client, err := mc.DialToSMTPClientWithContext(ctx)
	interrupted := !stop()
	if err == nil && interrupted {
		err = context.Cause(ctx)
	}
	if err != nil {
		// go-mail leaves the connection open when the handshake fails
		// after connecting (no STARTTLS, AUTH refused): close it here.
		if raw := h.get(); raw != nil {
			hardClose(raw)
		}
		if cerr := ctx.Err(); cerr != nil && interrupted {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		return nil, fmt.Errorf("connect to %s (%s): %w", st.Addr(), st.Security, err)
	}
	has := func(ext string) bool { ok, _ := client.Extension(ext); return ok }
	s.eightBit.Store(has("8BITMIME"))
	pc := &conn{client: client, raw: h.get(), mailParams: mailParams(has), eightBit: has("8BITMIME")}
	pc.pipelining = has("PIPELINING") && !s.cfg.Settings.NoPipelining
	// BDAT is sent behind MAIL and RCPT without waiting, so it needs
	// PIPELINING too (RFC 3030, section 2, on BDAT with PIPELINING).
	pc.chunking = pc.pipelining && has("CHUNKING") && !s.cfg.Settings.NoChunking
	return pc, nil
}

// dialNet opens the TCP connection, with TLS for smtps.
func (s *Sender) dialNet(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	if s.cfg.Settings.Security == ImplicitTLS {
		td := &tls.Dialer{NetDialer: d, Config: s.tlsConfig}
		return td.DialContext(ctx, network, addr)
	}
	return d.DialContext(ctx, network, addr)
}

// rawHolder keeps the connection go-mail dialled, so that cancellation can
// interrupt the handshake and a failed handshake can be closed.
type rawHolder struct {
	mu          sync.Mutex
	c           net.Conn
	interrupted bool
}

func (h *rawHolder) set(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.c = c
	return !h.interrupted
}

func (h *rawHolder) get() net.Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.c
}

func (h *rawHolder) interrupt() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.interrupted = true
	if h.c != nil {
		_ = h.c.SetDeadline(time.Unix(1, 0))
	}
}

// discard closes a connection that failed, without a word to the server.
func discard(pc *conn) { hardClose(pc.raw) }

// quit closes a healthy connection politely.
func quit(pc *conn) {
	_ = pc.raw.SetDeadline(time.Now().Add(quitTimeout))
	_ = pc.client.Quit()
	hardClose(pc.raw)
}

// hardClose closes the socket under c at once (for TLS without waiting to
// send close_notify).
func hardClose(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	_ = c.Close()
}

// reapLoop closes connections idle for longer than IdleTimeout.
func (s *Sender) reapLoop() {
	defer close(s.reaped)
	t := time.NewTicker(max(s.cfg.IdleTimeout/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.reapIdle(now)
		}
	}
}

func (s *Sender) reapIdle(now time.Time) {
	s.mu.Lock()
	n := 0
	for n < len(s.idle) && now.Sub(s.idle[n].lastUsed) >= s.cfg.IdleTimeout {
		n++
	}
	old := make([]*conn, n)
	copy(old, s.idle[:n])
	s.idle = append(s.idle[:0], s.idle[n:]...)
	s.mu.Unlock()
	for _, pc := range old {
		quit(pc)
	}
}

// Close closes the idle connections (with QUIT) and stops the sender: later
// calls to Send fail with ErrClosed. Sends in flight finish, and their
// connections are closed when they do. Close is idempotent.
func (s *Sender) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	close(s.stop)
	<-s.reaped
	var wg sync.WaitGroup
	for _, pc := range idle {
		wg.Go(func() { quit(pc) })
	}
	wg.Wait()
	return nil
}
