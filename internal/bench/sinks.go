package bench

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tally counts what a sink accepted, per recipient, and when. Recipients
// are numbered (manager<i>@…, +4474<i>), so counts live in a slice indexed
// by number: the bench's own memory stays small and flat as N grows, and
// the process's peak RSS speaks about crier.
type tally struct {
	mu     sync.Mutex
	start  time.Time
	counts []uint8  // by recipient number
	times  []uint32 // microseconds since start, one per accepted message
	bad    int      // recipients that are not bench recipients
	total  atomic.Int64
}

func newTally(n int) *tally {
	return &tally{counts: make([]uint8, n+1), times: make([]uint32, 0, n)}
}

// reset starts a new measurement at start.
func (t *tally) reset(start time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start = start
	t.total.Store(0)
	clear(t.counts)
	t.times = t.times[:0]
	t.bad = 0
}

// recipientNumber extracts i from manager<i>@… or +4474<8 digits>.
func recipientNumber(rcpt string) int {
	digits := rcpt
	switch {
	case strings.HasPrefix(rcpt, "manager"):
		digits = rcpt[len("manager"):]
		if at := strings.IndexByte(digits, '@'); at >= 0 {
			digits = digits[:at]
		}
	case strings.HasPrefix(rcpt, "+4474"):
		digits = rcpt[len("+4474"):]
	default:
		return -1
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return -1
	}
	return n
}

func (t *tally) accept(rcpt string) {
	now := time.Now()
	i := recipientNumber(rcpt)
	t.mu.Lock()
	if i < 0 || i >= len(t.counts) {
		t.bad++
	} else if t.counts[i] < 255 {
		t.counts[i]++
	}
	t.times = append(t.times, uint32(now.Sub(t.start).Microseconds()))
	t.mu.Unlock()
	t.total.Add(1)
}

// snapshot returns the accepted count, distinct recipients and doubles.
func (t *tally) snapshot() (accepted, distinct, doubled int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.counts {
		if n > 0 {
			distinct++
			accepted += int(n)
			doubled += int(n - 1)
		}
	}
	return accepted + t.bad, distinct, doubled + t.bad
}

func (t *tally) latencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Duration, len(t.times))
	for i, us := range t.times {
		out[i] = time.Duration(us) * time.Microsecond
	}
	return out
}

// smtpSink is a minimal SMTP server that accepts and discards every
// message after an optional delay, counting recipients. It is written by
// hand rather than on an SMTP server library so that the sink's own cost
// stays small beside crier's in the bench's CPU figure: commands and body
// are read a line at a time from a large buffer, and replies are written
// only when the client has sent nothing more, so a pipelined group of
// commands (RFC 2920) gets its replies in one write.
type smtpSink struct {
	ln      net.Listener
	tally   *tally
	latency time.Duration
	done    chan struct{} // closed by close, ends latency waits

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and one per connection
}

const (
	// smtpReadBuffer bounds a line held whole: a longer command is
	// refused, a longer body line passed over.
	smtpReadBuffer = 64 << 10
	// smtpMaxSize is the SIZE advertised and enforced per message.
	smtpMaxSize = 32 << 20
	// smtpMaxRecipients per message, as the go-smtp based sink had.
	smtpMaxRecipients = 10
	// smtpTimeout bounds each command, its reply included.
	smtpTimeout = time.Minute
)

func startSMTPSink(latency time.Duration, n int) (*smtpSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return newSMTPSink(ln, latency, n), nil
}

// newSMTPSink serves SMTP on ln until close.
func newSMTPSink(ln net.Listener, latency time.Duration, n int) *smtpSink {
	s := &smtpSink{ln: ln, tally: newTally(n), latency: latency, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *smtpSink) url() string { return "smtp://" + s.ln.Addr().String() + "?tls=none" }

// close stops accepting, closes every open connection and waits until
// their goroutines have ended.
func (s *smtpSink) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		_ = s.ln.Close()
		for c := range s.conns {
			_ = c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *smtpSink) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // out of file descriptors, say: try again
			time.Sleep(5 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1) // the counter is not zero: this loop holds one
		s.mu.Unlock()
		go s.serve(c)
	}
}

// smtpSession is the state of one connection.
type smtpSession struct {
	sink  *smtpSink
	c     net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	hello bool     // EHLO or HELO seen
	mail  bool     // MAIL FROM accepted: a transaction is open
	rcpts []string // accepted recipients of the open transaction
	size  int      // bytes of the message so far
}

func (s *smtpSink) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	x := &smtpSession{sink: s, c: c, r: bufio.NewReaderSize(c, smtpReadBuffer), w: bufio.NewWriterSize(c, 4<<10)}
	_ = c.SetDeadline(time.Now().Add(smtpTimeout))
	x.reply("220 sink.bench ESMTP")
	if x.flush() != nil {
		return
	}
	for {
		_ = c.SetDeadline(time.Now().Add(smtpTimeout))
		line, long, err := readLine(x.r)
		if err != nil {
			return
		}
		if long {
			x.reply("500 5.5.2 Line too long")
		} else if quit := x.command(line); quit {
			_ = x.w.Flush()
			return
		}
		if x.flush() != nil {
			return
		}
	}
}

// readLine returns the next line with its line ending. A line longer than
// r's buffer is consumed to its end and reported as long, without its
// bytes: its remainder must never be taken for the start of a line.
func readLine(r *bufio.Reader) (line []byte, long bool, err error) {
	line, err = r.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, false, err
	}
	for err == bufio.ErrBufferFull {
		_, err = r.ReadSlice('\n')
	}
	return nil, true, err
}

func (x *smtpSession) reply(s string) {
	_, _ = x.w.WriteString(s)
	_, _ = x.w.WriteString("\r\n")
}

// flush sends the pending replies unless more commands are already
// buffered: their replies then go out together with these.
func (x *smtpSession) flush() error {
	if x.r.Buffered() > 0 {
		return nil
	}
	return x.w.Flush()
}

func (x *smtpSession) resetTransaction() {
	x.mail = false
	x.size = 0
	x.rcpts = x.rcpts[:0]
}

// command handles one command line and reports whether the client quit.
func (x *smtpSession) command(line []byte) (quit bool) {
	line = bytes.TrimRight(line, "\r\n")
	verb, arg, _ := bytes.Cut(line, []byte(" "))
	var v [4]byte
	if len(verb) != len(v) {
		x.reply("502 5.5.1 Command not implemented")
		return false
	}
	for i, b := range verb {
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		v[i] = b
	}
	switch string(v[:]) {
	case "EHLO":
		x.hello = true
		x.resetTransaction()
		x.reply("250-sink.bench\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE " + strconv.Itoa(smtpMaxSize))
	case "HELO":
		x.hello = true
		x.resetTransaction()
		x.reply("250 sink.bench")
	case "MAIL":
		switch {
		case !x.hello:
			x.reply("503 5.5.1 Send EHLO first")
		case x.mail:
			x.reply("503 5.5.1 Nested MAIL command")
		default:
			if _, ok := pathArg(arg, "FROM:"); !ok {
				x.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
				return false
			}
			x.mail = true
			x.reply("250 2.1.0 OK")
		}
	case "RCPT":
		switch {
		case !x.mail:
			x.reply("503 5.5.1 Need MAIL before RCPT")
		case len(x.rcpts) >= smtpMaxRecipients:
			x.reply("452 4.5.3 Too many recipients")
		default:
			to, ok := pathArg(arg, "TO:")
			if !ok || len(to) == 0 {
				x.reply("501 5.5.4 Syntax: RCPT TO:<address>")
				return false
			}
			x.rcpts = append(x.rcpts, string(to))
			x.reply("250 2.1.5 OK")
		}
	case "DATA":
		if len(x.rcpts) == 0 {
			// Also after refused RCPTs that a pipelining client sent
			// DATA behind: it must not get 354.
			x.reply("503 5.5.1 Need RCPT before DATA")
			return false
		}
		return x.data()
	case "BDAT":
		return x.bdat(arg)
	case "RSET":
		x.resetTransaction()
		x.reply("250 2.0.0 OK")
	case "NOOP":
		x.reply("250 2.0.0 OK")
	case "QUIT":
		x.reply("221 2.0.0 Bye")
		return true
	default:
		x.reply("502 5.5.1 Command not implemented")
	}
	return false
}

// pathArg returns the address of a MAIL FROM:<a> or RCPT TO:<a> argument
// (keyword is "FROM:" or "TO:"), without angle brackets and parameters.
func pathArg(arg []byte, keyword string) ([]byte, bool) {
	if len(arg) < len(keyword) || !bytes.EqualFold(arg[:len(keyword)], []byte(keyword)) {
		return nil, false
	}
	arg = bytes.TrimLeft(arg[len(keyword):], " ")
	if len(arg) > 0 && arg[0] == '<' {
		end := bytes.IndexByte(arg, '>')
		if end < 0 {
			return nil, false
		}
		return arg[1:end], true
	}
	addr, _, _ := bytes.Cut(arg, []byte(" "))
	return addr, true
}

// data answers DATA, reads the body up to the line ".", discards it, waits
// the sink's latency and counts the recipients. It reports whether the
// connection must end.
func (x *smtpSession) data() (quit bool) {
	x.reply("354 Start mail input; end with <CRLF>.<CRLF>")
	if x.flush() != nil {
		return true
	}
	size := 0
	for {
		line, long, err := readLine(x.r)
		if err != nil {
			return true
		}
		if long {
			size += smtpReadBuffer // at least
			continue
		}
		// Dot-stuffed lines ("..", "..x") are not the end; the body is
		// discarded, so they need no unstuffing.
		if string(line) == ".\r\n" || string(line) == ".\n" {
			break
		}
		size += len(line)
	}
	x.size += size
	return x.endMessage()
}

// endMessage answers the end of a message (DATA or the last BDAT chunk):
// after the sink's latency it counts the recipients. It reports whether the
// connection must end.
func (x *smtpSession) endMessage() (quit bool) {
	defer x.resetTransaction()
	if x.size > smtpMaxSize {
		x.reply("552 5.3.4 Message too big")
		return false
	}
	if x.sink.latency > 0 {
		t := time.NewTimer(x.sink.latency)
		select {
		case <-t.C:
		case <-x.sink.done:
			t.Stop()
			return true
		}
	}
	for _, to := range x.rcpts {
		x.sink.tally.accept(to)
	}
	_ = x.c.SetDeadline(time.Now().Add(smtpTimeout))
	x.reply("250 2.0.0 OK: queued")
	return false
}

// bdat handles "BDAT size [LAST]" (RFC 3030): the chunk of size bytes that
// follows is read (and discarded) even when the command is refused, and the
// last chunk ends the message like the end of DATA. It reports whether the
// connection must end.
func (x *smtpSession) bdat(arg []byte) (quit bool) {
	sizeArg, last, _ := bytes.Cut(arg, []byte(" "))
	size, err := strconv.ParseUint(string(sizeArg), 10, 31)
	if err != nil || (len(last) > 0 && !bytes.EqualFold(last, []byte("LAST"))) {
		// The chunk's size is unknown: the session cannot go on.
		x.reply("501 5.5.4 Syntax: BDAT size [LAST]")
		return true
	}
	if _, err := io.CopyN(io.Discard, x.r, int64(size)); err != nil {
		return true
	}
	if len(x.rcpts) == 0 {
		x.resetTransaction()
		x.reply("503 5.5.1 Need RCPT before BDAT")
		return false
	}
	x.size += int(size)
	if len(last) == 0 {
		x.reply("250 2.0.0 " + strconv.FormatUint(size, 10) + " octets received")
		return false
	}
	return x.endMessage()
}

// twilioSink answers Twilio's create-message request with 201 and a
// Message resource after an optional delay, counting recipients.
type twilioSink struct {
	srv     *http.Server
	ln      net.Listener
	tally   *tally
	latency time.Duration
}

func startTwilioSink(latency time.Duration, n int) (*twilioSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &twilioSink{ln: ln, tally: newTally(n), latency: latency}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2010-04-01/Accounts/{sid}/Messages.json", s.create)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	}()
	return s, nil
}

func (s *twilioSink) url() string { return "http://" + s.ln.Addr().String() }

func (s *twilioSink) close() { _ = s.srv.Close() }

func (s *twilioSink) create(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, `{"code":21602,"message":"bad form","status":400}`, http.StatusBadRequest)
		return
	}
	if s.latency > 0 {
		time.Sleep(s.latency)
	}
	to := r.PostForm.Get("To")
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	body, _ := json.Marshal(twilioMessage{ // strings only: cannot fail
		SID: "SM" + hex.EncodeToString(b), AccountSID: r.PathValue("sid"), To: to,
		From: r.PostForm.Get("From"), Body: r.PostForm.Get("Body"), Status: "queued", NumSegments: "1",
	})
	body = append(body, '\n') // as json.Encoder wrote it
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(body)
	s.tally.accept(to)
}

// twilioMessage is the part of Twilio's Message resource the sink returns.
// A struct marshals more cheaply than a map; its fields are in the map's
// (sorted) key order, so the bytes are the same as before.
type twilioMessage struct {
	AccountSID  string `json:"account_sid"`
	Body        string `json:"body"`
	From        string `json:"from"`
	NumSegments string `json:"num_segments"`
	SID         string `json:"sid"`
	Status      string `json:"status"`
	To          string `json:"to"`
}
