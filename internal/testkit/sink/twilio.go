package sink

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Twilio is a minimal HTTP/1.1 server that answers Twilio's
// create-message request with 201 and a Message resource after an optional
// delay, counting recipients. It is written by hand rather than on
// net/http's server, which cost more CPU per request than crier's own SMS
// sender and so blurred the bench's CPU figure: a request is read from a
// large buffer, only the header fields the sink needs are looked at, and
// responses are written only when the client has sent nothing more, so
// pipelined requests get their responses in one write.
type Twilio struct {
	sinkServer
	tally     *Tally
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

func StartTwilio(latency time.Duration, n int) (*Twilio, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return NewTwilio(ln, latency, n), nil
}

// NewTwilio serves Twilio's create-message request on ln until close.
func NewTwilio(ln net.Listener, latency time.Duration, n int) *Twilio {
	s := &Twilio{tally: NewTally(n), latency: latency}
	var b [8]byte
	_, _ = rand.Read(b[:])
	hex.Encode(s.sidPrefix[:], b[:])
	s.start(ln, s.serve)
	return s
}

func (s *Twilio) URL() string { return "http://" + s.ln.Addr().String() }

// newSID returns a message SID, "SM" and 32 hex digits: the sink's random
// prefix and a counter, unique without a random read per message.
func (s *Twilio) newSID() string {
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
	sink *Twilio
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
func (s *Twilio) serve(c net.Conn) {
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
	var to, from, body string
	if x.form {
		var ok bool
		if to, from, body, ok = messageForm(x.body); !ok {
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
	x.json.Reset()
	_ = x.enc.Encode(twilioMessage{ // strings only: cannot fail
		SID: x.sink.newSID(), AccountSID: string(account), To: to,
		From: from, Body: body, Status: "queued", NumSegments: "1",
	})
	x.respond(http.StatusCreated, "", x.json.Bytes())
	x.sink.tally.accept(to)
	return nil
}

// messageFields are the form fields messageForm returns, in order.
var messageFields = []string{"To", "From", "Body"}

// messageForm reads To, From and Body from a create-message form (the
// first value of each), refusing what url.ParseQuery refuses: a semicolon
// in a field, a malformed escape. Only the three values are unescaped
// into strings; ParseQuery built a map of every field, a third of the
// sink's CPU.
func messageForm(form []byte) (to, from, body string, ok bool) {
	var seen [3]bool
	for field := range bytes.SplitSeq(form, []byte("&")) {
		if len(field) == 0 {
			continue
		}
		if bytes.IndexByte(field, ';') >= 0 {
			return "", "", "", false
		}
		rawKey, value, _ := bytes.Cut(field, []byte("="))
		key := string(rawKey) // not allocated: compared only
		if bytes.ContainsAny(rawKey, "%+") {
			k, err := url.QueryUnescape(key)
			if err != nil {
				return "", "", "", false
			}
			key = k
		}
		i := slices.Index(messageFields, key)
		if i < 0 || seen[i] {
			if !validEscapes(value) {
				return "", "", "", false
			}
			continue
		}
		v, err := url.QueryUnescape(string(value))
		if err != nil {
			return "", "", "", false
		}
		seen[i] = true
		switch i {
		case 0:
			to = v
		case 1:
			from = v
		default:
			body = v
		}
	}
	return to, from, body, true
}

// validEscapes reports whether every % in b starts an escape, two hex
// digits, as url.QueryUnescape requires.
func validEscapes(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '%' {
			continue
		}
		if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
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
