package bench

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
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

// sinkServer accepts connections and serves each in a goroutine of its
// own. It tracks them so that close can end them all and wait: a bench
// run must not leave a sink's goroutines behind, nor its connections.
type sinkServer struct {
	ln   net.Listener
	done chan struct{} // closed by close, ends latency waits

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and one per connection
}

// start serves ln until close, calling serve for each connection; the
// connection is closed when serve returns.
func (s *sinkServer) start(ln net.Listener, serve func(net.Conn)) {
	s.ln = ln
	s.done = make(chan struct{})
	s.conns = map[net.Conn]struct{}{}
	s.wg.Add(1)
	go s.acceptLoop(serve)
}

// close stops accepting, closes every open connection and waits until
// their goroutines have ended.
func (s *sinkServer) close() {
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

func (s *sinkServer) acceptLoop(serve func(net.Conn)) {
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
		go func() {
			defer s.wg.Done()
			defer func() {
				_ = c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			serve(c)
		}()
	}
}

// smtpSink is a minimal SMTP server that accepts and discards every
// message after an optional delay, counting recipients. It is written by
// hand rather than on an SMTP server library so that the sink's own cost
// stays small beside crier's in the bench's CPU figure: commands and body
// are read a line at a time from a large buffer, and replies are written
// only when the client has sent nothing more, so a pipelined group of
// commands (RFC 2920) gets its replies in one write.
type smtpSink struct {
	sinkServer
	tally   *tally
	latency time.Duration
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
	s := &smtpSink{tally: newTally(n), latency: latency}
	s.start(ln, s.serve)
	return s
}

func (s *smtpSink) url() string { return "smtp://" + s.ln.Addr().String() + "?tls=none" }

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

// twilioSink is a minimal HTTP/1.1 server that answers Twilio's
// create-message request with 201 and a Message resource after an optional
// delay, counting recipients. It is written by hand rather than on
// net/http's server, which cost more CPU per request than crier's own SMS
// sender and so blurred the bench's CPU figure: a request is read from a
// large buffer, only the header fields the sink needs are looked at, and
// responses are written only when the client has sent nothing more, so
// pipelined requests get their responses in one write.
type twilioSink struct {
	sinkServer
	tally     *tally
	latency   time.Duration
	sidPrefix [16]byte // hex digits, random per sink
	sidSeq    atomic.Uint64
}

const (
	// httpReadBuffer bounds a request line or header field line.
	httpReadBuffer = 16 << 10
	// httpMaxHeader bounds a request's line and header fields together.
	httpMaxHeader = 64 << 10
	// httpMaxBody bounds a request's body; a create-message form is a few
	// hundred bytes.
	httpMaxBody = 1 << 20
	// httpTimeout bounds reading a request, from its first byte, and
	// writing its response.
	httpTimeout = time.Minute
	// httpIdleTimeout ends a connection idle between requests. It is
	// longer than clients keep idle connections (crier's pool and
	// net/http's default: 90 s), so that the client closes them: a POST
	// sent on a connection the server has just closed is not retried.
	httpIdleTimeout = 5 * time.Minute
	// twilioPathPrefix and twilioPathSuffix enclose the account SID in
	// the path of the create-message request.
	twilioPathPrefix = "/2010-04-01/Accounts/"
	twilioPathSuffix = "/Messages.json"
)

// Error bodies in Twilio's shape; the 400 is the one the net/http based
// sink sent.
var (
	twilioBadForm   = []byte(`{"code":21602,"message":"bad form","status":400}` + "\n")
	twilioNotFound  = []byte(`{"code":20404,"message":"not found","status":404}` + "\n")
	twilioBadMethod = []byte(`{"code":20004,"message":"method not allowed","status":405}` + "\n")
)

func startTwilioSink(latency time.Duration, n int) (*twilioSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return newTwilioSink(ln, latency, n), nil
}

// newTwilioSink serves Twilio's create-message request on ln until close.
func newTwilioSink(ln net.Listener, latency time.Duration, n int) *twilioSink {
	s := &twilioSink{tally: newTally(n), latency: latency}
	var b [8]byte
	_, _ = rand.Read(b[:])
	hex.Encode(s.sidPrefix[:], b[:])
	s.start(ln, s.serve)
	return s
}

func (s *twilioSink) url() string { return "http://" + s.ln.Addr().String() }

// newSID returns a message SID, "SM" and 32 hex digits: the sink's random
// prefix and a counter, unique without a random read per message.
func (s *twilioSink) newSID() string {
	var b [34]byte
	copy(b[:], "SM")
	copy(b[2:], s.sidPrefix[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], s.sidSeq.Add(1))
	hex.Encode(b[18:], n[:])
	return string(b[:])
}

// httpConn is the state of one connection and of the request being read.
// Its buffers are reused from one request to the next.
type httpConn struct {
	sink *twilioSink
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	json bytes.Buffer  // the response body
	enc  *json.Encoder // into json, as the first sink wrote its bodies
	num  []byte        // scratch for numbers and dates

	method, path, body []byte
	http10             bool // an HTTP/1.0 request: close unless asked not to
	closeTok, keepTok  bool // Connection: close, Connection: keep-alive
	keepAlive          bool // the connection stays open after the response
	form               bool // the body is application/x-www-form-urlencoded
	length             int  // Content-Length, -1 without one
	transferEncoding   bool // chunked bodies are not supported
	expect             bool // Expect: 100-continue
}

// serve answers the requests on c in turn.
func (s *twilioSink) serve(c net.Conn) {
	x := &httpConn{sink: s, c: c, r: bufio.NewReaderSize(c, httpReadBuffer), w: bufio.NewWriterSize(c, 4<<10)}
	x.enc = json.NewEncoder(&x.json)
	for {
		if x.r.Buffered() == 0 {
			_ = c.SetReadDeadline(time.Now().Add(httpIdleTimeout))
			if _, err := x.r.Peek(1); err != nil {
				return
			}
		}
		_ = c.SetDeadline(time.Now().Add(httpTimeout))
		if err := x.exchange(); err != nil {
			_ = x.w.Flush() // the responses to earlier pipelined requests
			return
		}
		if !x.keepAlive {
			if x.w.Flush() == nil {
				lingerClose(c)
			}
			return
		}
		// Unless another request is buffered already: its response then
		// goes out together with this one.
		if x.r.Buffered() == 0 && x.w.Flush() != nil {
			return
		}
	}
}

// lingerClose half-closes c and reads what the client still sends, for a
// while, before c is closed: closing with unread data resets the
// connection, and the client could lose the response.
func lingerClose(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, httpMaxBody))
}

// exchange reads one request and writes its response to x.w. An error
// means the connection must end without a response to this request.
func (x *httpConn) exchange() error {
	status, err := x.readRequest()
	if err != nil {
		return err
	}
	if status != 0 {
		// What follows in the stream cannot be trusted to start a
		// request.
		x.keepAlive = false
		x.respond(status, "", []byte(`{"message":"`+strings.ToLower(http.StatusText(status))+`","status":`+strconv.Itoa(status)+"}\n"))
		return nil
	}
	account, ok := twilioAccount(x.path)
	switch {
	case !ok:
		x.respond(http.StatusNotFound, "", twilioNotFound)
	case string(x.method) != http.MethodPost:
		x.respond(http.StatusMethodNotAllowed, "Allow: POST\r\n", twilioBadMethod)
	default:
		return x.create(account)
	}
	return nil
}

// twilioAccount returns the account SID of a create-message path.
func twilioAccount(path []byte) ([]byte, bool) {
	sid, ok := bytes.CutPrefix(path, []byte(twilioPathPrefix))
	if ok {
		sid, ok = bytes.CutSuffix(sid, []byte(twilioPathSuffix))
	}
	if !ok || len(sid) == 0 || bytes.IndexByte(sid, '/') >= 0 {
		return nil, false
	}
	return sid, true
}

// create answers a create-message request: after the sink's latency, 201
// and the Message resource, and the recipient counted.
func (x *httpConn) create(account []byte) error {
	var form url.Values
	if x.form {
		var err error
		if form, err = url.ParseQuery(string(x.body)); err != nil {
			x.respond(http.StatusBadRequest, "", twilioBadForm)
			return nil
		}
	}
	if x.sink.latency > 0 {
		// Responses to earlier pipelined requests need not wait too.
		if x.w.Buffered() > 0 {
			if err := x.w.Flush(); err != nil {
				return err
			}
		}
		t := time.NewTimer(x.sink.latency)
		select {
		case <-t.C:
		case <-x.sink.done:
			t.Stop()
			return net.ErrClosed
		}
		_ = x.c.SetDeadline(time.Now().Add(httpTimeout))
	}
	to := form.Get("To")
	x.json.Reset()
	_ = x.enc.Encode(twilioMessage{ // strings only: cannot fail
		SID: x.sink.newSID(), AccountSID: string(account), To: to,
		From: form.Get("From"), Body: form.Get("Body"), Status: "queued", NumSegments: "1",
	})
	x.respond(http.StatusCreated, "", x.json.Bytes())
	x.sink.tally.accept(to)
	return nil
}

// respond writes a response with a JSON body, the body left out for HEAD.
// extra holds more header fields, each ending in CRLF.
func (x *httpConn) respond(status int, extra string, body []byte) {
	w := x.w
	_, _ = w.WriteString("HTTP/1.1 ")
	x.num = strconv.AppendInt(x.num[:0], int64(status), 10)
	_, _ = w.Write(x.num)
	_ = w.WriteByte(' ')
	_, _ = w.WriteString(http.StatusText(status))
	_, _ = w.WriteString("\r\nContent-Type: application/json\r\nContent-Length: ")
	x.num = strconv.AppendInt(x.num[:0], int64(len(body)), 10)
	_, _ = w.Write(x.num)
	_, _ = w.WriteString("\r\nDate: ")
	x.num = time.Now().UTC().AppendFormat(x.num[:0], http.TimeFormat)
	_, _ = w.Write(x.num)
	_, _ = w.WriteString("\r\n")
	if !x.keepAlive {
		_, _ = w.WriteString("Connection: close\r\n")
	} else if x.http10 {
		_, _ = w.WriteString("Connection: keep-alive\r\n")
	}
	_, _ = w.WriteString(extra)
	_, _ = w.WriteString("\r\n")
	if string(x.method) != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// readRequest reads a request's line, header fields and body. A status
// other than 0 is the error response to send before closing.
func (x *httpConn) readRequest() (status int, err error) {
	x.method, x.path, x.body = x.method[:0], x.path[:0], x.body[:0]
	x.http10, x.closeTok, x.keepTok, x.form, x.transferEncoding, x.expect = false, false, false, false, false, false
	x.length = -1
	size := 0 // of the request line and header fields
	var line []byte
	for len(line) == 0 { // empty lines before a request are ignored (RFC 9112, 2.2)
		if line, status, err = x.readHeaderLine(&size); status != 0 || err != nil {
			return status, err
		}
	}
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 {
		return http.StatusBadRequest, nil
	}
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		x.http10 = true
	default:
		if bytes.HasPrefix(proto, []byte("HTTP/")) {
			return http.StatusHTTPVersionNotSupported, nil
		}
		return http.StatusBadRequest, nil
	}
	path, _, _ := bytes.Cut(target, []byte("?"))
	x.method = append(x.method, method...)
	x.path = append(x.path, path...)
	for {
		if line, status, err = x.readHeaderLine(&size); status != 0 || err != nil {
			return status, err
		}
		if len(line) == 0 {
			break
		}
		if status = x.field(line); status != 0 {
			return status, nil
		}
	}
	switch {
	case x.transferEncoding:
		return http.StatusLengthRequired, nil
	case x.length > httpMaxBody:
		return http.StatusRequestEntityTooLarge, nil
	case x.length < 0: // a request without Content-Length has no body
		x.length = 0
	}
	x.keepAlive = !x.closeTok && (!x.http10 || x.keepTok)
	if x.expect && x.length > 0 && !x.http10 {
		_, _ = x.w.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := x.w.Flush(); err != nil {
			return 0, err
		}
	}
	if cap(x.body) < x.length {
		x.body = make([]byte, x.length)
	}
	x.body = x.body[:x.length]
	_, err = io.ReadFull(x.r, x.body)
	return 0, err
}

// readHeaderLine returns the next line of the request line and header
// fields, without its line ending, adding its length to size.
func (x *httpConn) readHeaderLine(size *int) (line []byte, status int, err error) {
	line, err = x.r.ReadSlice('\n')
	*size += len(line)
	if err == bufio.ErrBufferFull || *size > httpMaxHeader {
		return nil, http.StatusRequestHeaderFieldsTooLarge, nil
	}
	if err != nil {
		return nil, 0, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, 0, nil
}

// field takes in one header field line, returning an error status if the
// request cannot be read on.
func (x *httpConn) field(line []byte) (status int) {
	name, value, ok := bytes.Cut(line, []byte(":"))
	// Whitespace in or before the name (obsolete line folding too) is
	// refused, as RFC 9112 asks.
	if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
		return http.StatusBadRequest
	}
	for i, b := range name { // in place: the line is not needed again
		if 'A' <= b && b <= 'Z' {
			name[i] = b + 'a' - 'A'
		}
	}
	value = bytes.Trim(value, " \t")
	switch string(name) {
	case "content-length":
		n, ok := parseLength(value)
		if !ok || (x.length >= 0 && n != x.length) {
			return http.StatusBadRequest
		}
		x.length = n
	case "transfer-encoding":
		x.transferEncoding = true
	case "connection":
		for tok := range bytes.SplitSeq(value, []byte(",")) {
			tok = bytes.Trim(tok, " \t")
			x.closeTok = x.closeTok || bytes.EqualFold(tok, []byte("close"))
			x.keepTok = x.keepTok || bytes.EqualFold(tok, []byte("keep-alive"))
		}
	case "content-type":
		mediaType, _, _ := bytes.Cut(value, []byte(";"))
		x.form = bytes.EqualFold(bytes.TrimRight(mediaType, " \t"), []byte("application/x-www-form-urlencoded"))
	case "expect":
		if !bytes.EqualFold(value, []byte("100-continue")) {
			return http.StatusExpectationFailed
		}
		x.expect = true
	}
	return 0
}

// parseLength parses a Content-Length value. A length beyond httpMaxBody
// comes out as httpMaxBody+1, refused all the same, so that it cannot
// overflow.
func parseLength(v []byte) (int, bool) {
	if len(v) == 0 {
		return 0, false
	}
	n := 0
	for _, b := range v {
		if b < '0' || '9' < b {
			return 0, false
		}
		if n <= httpMaxBody {
			n = n*10 + int(b-'0')
		}
	}
	return min(n, httpMaxBody+1), true
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
