package sink

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"time"
)

// SMTP is a minimal SMTP server that accepts and discards every
// message after an optional delay, counting recipients. It is written by
// hand rather than on an SMTP server library so that the sink's own cost
// stays small beside crier's in the bench's CPU figure: commands and body
// are read a line at a time from a large buffer, and replies are written
// only when the client has sent nothing more, so a pipelined group of
// commands (RFC 2920) gets its replies in one write.
type SMTP struct {
	sinkServer
	tally   *Tally
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

func StartSMTP(latency time.Duration, n int) (*SMTP, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return NewSMTP(ln, latency, n), nil
}

// NewSMTP serves SMTP on ln until close.
func NewSMTP(ln net.Listener, latency time.Duration, n int) *SMTP {
	s := &SMTP{tally: NewTally(n), latency: latency}
	s.start(ln, s.serve)
	return s
}

func (s *SMTP) URL() string { return "smtp://" + s.ln.Addr().String() + "?tls=none" }

// smtpSession is the state of one connection.
type smtpSession struct {
	sink  *SMTP
	c     net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	hello bool     // EHLO or HELO seen
	mail  bool     // MAIL FROM accepted: a transaction is open
	rcpts []string // accepted recipients of the open transaction
	size  int      // bytes of the message so far
}

func (s *SMTP) serve(c net.Conn) {
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
