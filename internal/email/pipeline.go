package email

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"strconv"
	"strings"
)

// mailParams returns the parameters MAIL FROM carries on a connection with
// the given extensions, as go-mail's Client.Mail would add them: BODY=8BITMIME
// and SMTPUTF8 when offered.
func mailParams(has func(ext string) bool) string {
	var p strings.Builder
	if has("8BITMIME") {
		p.WriteString(" BODY=8BITMIME")
	}
	if has("SMTPUTF8") {
		p.WriteString(" SMTPUTF8")
	}
	return p.String()
}

// writeEnvelope writes the MAIL and RCPT commands of a pipelined
// transaction to w (buffered: a write to it does not fail).
func (s *Sender) writeEnvelope(w io.StringWriter, pc *conn, rcpt string) {
	for _, part := range [...]string{"MAIL FROM:", s.envFrom, pc.mailParams, "\r\nRCPT TO:", rcpt, "\r\n"} {
		w.WriteString(part)
	}
}

// pipelined runs one transaction with command pipelining (RFC 2920), on a
// server that offers PIPELINING: MAIL, RCPT and DATA go out in one write
// and their three replies are read together, then the message and its
// final dot in a second write. Two round trips per message instead of four,
// and two writes instead of five.
//
// Every reply is read even after a refusal, so the session stays in step:
// the returned stage is that of the first refused command, and the caller
// clears the transaction with RSET as it does without pipelining. A failure
// that is not a reply (I/O, a malformed reply) leaves the session in an
// unknown state; the caller then drops the connection.
func (s *Sender) pipelined(pc *conn, rcpt string, body []byte) (stage, error) {
	t := pc.client.Text
	w := t.W
	s.writeEnvelope(w, pc, rcpt)
	w.WriteString("DATA\r\n")
	if err := w.Flush(); err != nil {
		return stageMail, err
	}
	st, dataAccepted, err := readReplies(t, []reply{{stageMail, 250}, {stageRcpt, 25}, {stageData, 354}})
	if err != nil {
		if st != stageData && dataAccepted {
			// A server should refuse DATA when no RCPT was accepted
			// (RFC 2920, section 3.2), but the client may not rely on
			// it (section 3.1): one that answered 354 anyway gets a
			// single dot at once, a message with no recipient.
			if derr := endEmptyData(t); derr != nil {
				return st, errors.Join(err, derr)
			}
		}
		return st, err
	}
	if err := writeData(w, body); err != nil {
		return stageBody, err
	}
	_, _, err = t.ReadResponse(250)
	return stageEnd, err
}

// writeChunked appends one CHUNKING transaction to scratch: MAIL, RCPT,
// "BDAT size LAST" followed by the message, and RSET.
//
// RSET follows every transaction. After a refused BDAT the state of the
// session is indeterminate, and a client must send RSET before the next
// transaction (RFC 3030, section 2); since it goes out in the same write,
// it costs no round trip, and every transaction of a group then starts
// from a cleared session whatever happened to the one before it.
func (s *Sender) writeChunked(scratch *bytes.Buffer, pc *conn, rcpt string, body []byte) {
	s.writeEnvelope(scratch, pc, rcpt)
	scratch.WriteString("BDAT ")
	scratch.Write(strconv.AppendInt(scratch.AvailableBuffer(), int64(crlfLen(body)), 10))
	scratch.WriteString(" LAST\r\n")
	appendCRLF(scratch, body)
	scratch.WriteString("RSET\r\n")
}

// groupResult is the outcome of a pipelined group of CHUNKING
// transactions: each transaction's stage and error, io when a failure that
// is not a reply (I/O, a malformed reply) left the session in an unknown
// state, and unclean when a RSET was refused, so the session may not be
// where the client thinks: the connection must not be reused, and the
// refusals of the transactions from unsureFrom on may be consequences.
type groupResult struct {
	sts        []stage
	errs       []error
	io         error
	unclean    bool
	unsureFrom int
}

// chunkedGroup runs several CHUNKING transactions in one pipelined group:
// all of them go out in one write, and their replies come back together.
// RFC 2920 (section 3.1) lets RSET, MAIL and RCPT appear anywhere in a
// group and a message's content start one, so the next transaction may
// share the group that carries the previous message; BDAT may follow them
// in the pipeline because a server that offers PIPELINING discards the
// chunks of a failed BDAT already sent (RFC 3030, section 2). Sending MAIL,
// RCPT and BDAT in one write before any reply is a reading of those rules,
// not an example the RFCs give; Postfix 3.7 takes it (postfix_test.go).
// Each transaction ends with RSET (see writeChunked), so each is judged by
// its own replies only.
// A failure that is not a reply is the error of that transaction and of
// every one after it.
func (s *Sender) chunkedGroup(pc *conn, rcpts []string, bodies [][]byte, scratch *bytes.Buffer) groupResult {
	scratch.Reset()
	for i := range rcpts {
		s.writeChunked(scratch, pc, rcpts[i], bodies[i])
	}
	g := groupResult{sts: make([]stage, len(rcpts)), errs: make([]error, len(rcpts)), unsureFrom: len(rcpts)}
	fail := func(from int, st stage, err error) groupResult {
		for i := from; i < len(g.errs); i++ {
			g.sts[i], g.errs[i] = st, err
		}
		g.io = err
		return g
	}
	t := pc.client.Text
	if _, err := t.W.Write(scratch.Bytes()); err != nil {
		return fail(0, stageMail, err)
	}
	if err := t.W.Flush(); err != nil {
		return fail(0, stageMail, err)
	}
	for i := range rcpts {
		st, _, err := readReplies(t, []reply{{stageMail, 250}, {stageRcpt, 25}, {stageEnd, 250}})
		if err != nil && !isReply(err) {
			return fail(i, st, err)
		}
		g.sts[i], g.errs[i] = st, err
		if _, _, err := t.ReadResponse(250); err != nil {
			if !isReply(err) {
				return fail(i+1, stageMail, err)
			}
			if !g.unclean {
				g.unclean, g.unsureFrom = true, i+1
			}
		}
	}
	return g
}

// isReply reports whether err is a reply of the server (a refusal).
func isReply(err error) bool {
	var tp *textproto.Error
	return errors.As(err, &tp)
}

// reply is a reply expected for a pipelined command.
type reply struct {
	st   stage
	code int // as textproto.Reader.ReadResponse takes it
}

// readReplies reads one reply per command sent, even after a refusal, so
// the session stays in step. It returns the stage of the first refusal and
// its error, or of the first failure that is not a reply (I/O, a malformed
// reply: the session is then in an unknown state and must be dropped) when
// nothing was refused before it; lastOK reports whether the last command
// was accepted.
func readReplies(t *textproto.Conn, want []reply) (st stage, lastOK bool, err error) {
	var refused error
	refusedAt := want[0].st
	for _, w := range want {
		_, _, err := t.ReadResponse(w.code)
		lastOK = err == nil
		if err == nil {
			continue
		}
		var tp *textproto.Error
		if !errors.As(err, &tp) {
			if refused != nil {
				// The server hung up after refusing (421 does): the
				// refusal is the news; RSET then fails and the
				// connection is dropped.
				return refusedAt, false, refused
			}
			return w.st, false, err
		}
		if refused == nil {
			refused, refusedAt = err, w.st
		}
	}
	return refusedAt, lastOK, refused
}

// crlfLen is the length of body once appendCRLF has written it: a CR more
// for every LF without one, and CRLF after a last line without an ending.
func crlfLen(body []byte) int {
	n := len(body) + bytes.Count(body, []byte{'\n'}) - bytes.Count(body, []byte("\r\n"))
	if len(body) > 0 && body[len(body)-1] != '\n' {
		n += 2
	}
	return n
}

// appendCRLF writes body to b with every line ended by CRLF (a bare LF
// gets its CR, and a last line without an ending gets one), as BDAT
// requires of the message since nothing else normalises it.
func appendCRLF(b *bytes.Buffer, body []byte) {
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			b.Write(body)
			b.WriteString("\r\n")
			return
		}
		if i > 0 && body[i-1] == '\r' {
			b.Write(body[:i+1])
		} else {
			b.Write(body[:i])
			b.WriteString("\r\n")
		}
		body = body[i+1:]
	}
}

// endEmptyData ends a DATA that a server accepted after refusing MAIL or
// RCPT, so the session is back in step; whatever it answers, the message
// had no recipient.
func endEmptyData(t *textproto.Conn) error {
	t.W.WriteString(".\r\n")
	if err := t.W.Flush(); err != nil {
		return err
	}
	_, _, err := t.ReadResponse(0) // any code: only I/O fails
	return err
}

// writeData writes body as the content of DATA (RFC 5321, section 4.5.2):
// every line ends in CRLF, a line that starts with "." gets a second one,
// and the line "." ends the message. It works a line at a time rather than
// a byte at a time like textproto's DotWriter, with the same result (a CR
// not followed by LF, which composed messages never hold, is left alone).
func writeData(w *bufio.Writer, body []byte) error {
	if len(body) == 0 {
		w.WriteString("\r\n") // as DotWriter does
	}
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	return w.Flush()
}
