package email

import (
	"bufio"
	"bytes"
	"errors"
	"net/textproto"
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
	w.WriteString("MAIL FROM:")
	w.WriteString(s.envFrom)
	w.WriteString(pc.mailParams)
	w.WriteString("\r\nRCPT TO:")
	w.WriteString(rcpt)
	w.WriteString("\r\nDATA\r\n")
	if err := w.Flush(); err != nil {
		return stageMail, err
	}
	var refused error
	refusedAt := stageMail
	for _, step := range [...]struct {
		st   stage
		code int
	}{{stageMail, 250}, {stageRcpt, 25}, {stageData, 354}} {
		_, _, err := t.ReadResponse(step.code)
		if err == nil {
			continue
		}
		var reply *textproto.Error
		if !errors.As(err, &reply) {
			if refused != nil {
				// The server hung up after refusing (421 does): the
				// refusal is the news; RSET then fails and the
				// connection is dropped.
				return refusedAt, refused
			}
			return step.st, err
		}
		if refused == nil {
			refused, refusedAt = err, step.st
		}
	}
	if refused != nil {
		if refusedAt != stageData {
			// DATA must be refused when MAIL or RCPT was (RFC 2920,
			// section 3.1); a server that answered 354 anyway gets the
			// message ended at once, with no recipient to go to.
			if err := endEmptyData(t); err != nil {
				return refusedAt, errors.Join(refused, err)
			}
		}
		return refusedAt, refused
	}
	if err := writeData(w, body); err != nil {
		return stageBody, err
	}
	_, _, err := t.ReadResponse(250)
	return stageEnd, err
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
