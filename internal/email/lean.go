package email

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
)

// The lean composer writes the common message, whose parts all go in 8bit,
// without go-mail's message builder: the same header fields and MIME
// structure as compose's go-mail path (TestLeanMatchesGoMail compares the
// two field by field and part by part), in one pass into the send buffer.
// go-mail's builder cost about 40 µs per email (header maps, a
// multipart.Writer, a copy of every part), a quarter of crier's CPU per
// email in crier-bench; this costs a few. Messages that need
// quoted-printable still go through go-mail.

// boundaries makes multipart boundaries: a random prefix per process and
// a counter, unique without a random read per message.
type boundaries struct {
	prefix [24]byte // hex
	n      atomic.Uint64
}

func newBoundaries() *boundaries {
	var b boundaries
	var r [12]byte
	_, _ = rand.Read(r[:])
	hex.Encode(b.prefix[:], r[:])
	return &b
}

// next returns a boundary of 40 hex digits, which cannot occur in a part
// by chance.
func (b *boundaries) next() [40]byte {
	var out [40]byte
	copy(out[:], b.prefix[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], b.n.Add(1))
	hex.Encode(out[24:], n[:])
	return out
}

// composeLean writes m, whose parts are eightBitSafe, to b: subject is the
// encoded and foldable Subject, to the formatted recipient, unsub the
// List-Unsubscribe value.
func (s *Sender) composeLean(b *bytes.Buffer, m deliver.Message, subject, to, msgID, unsub string, oneClick bool) {
	b.WriteString("Date: ")
	b.Write(time.Now().AppendFormat(b.AvailableBuffer(), time.RFC1123Z))
	b.WriteString("\r\nMIME-Version: 1.0\r\nMessage-ID: <")
	b.WriteString(msgID)
	b.WriteString(">\r\n")
	writeFolded(b, "Subject: ", subject)
	b.WriteString("From: ")
	b.WriteString(s.fromField)
	b.WriteString("\r\nTo: ")
	b.WriteString(to)
	b.WriteString("\r\nList-Id: ")
	b.WriteString(s.cfg.ListID)
	b.WriteString("\r\nAuto-Submitted: auto-generated\r\n")
	if unsub != "" {
		b.WriteString("List-Unsubscribe: ")
		b.WriteString(unsub)
		b.WriteString("\r\n")
		if oneClick {
			b.WriteString("List-Unsubscribe-Post: " + oneClickPost + "\r\n")
		}
	}
	if m.Text == "" || m.HTML == "" {
		typ, body := "text/plain", m.Text
		if m.Text == "" {
			typ, body = "text/html", m.HTML
		}
		writePartHeader(b, typ)
		b.WriteString(body)
		return
	}
	bound := s.bounds.next()
	b.WriteString("Content-Type: multipart/alternative;\r\n boundary=")
	b.Write(bound[:])
	b.WriteString("\r\n\r\n--")
	b.Write(bound[:])
	b.WriteString("\r\n")
	writePartHeader(b, "text/plain")
	b.WriteString(m.Text)
	b.WriteString("\r\n--")
	b.Write(bound[:])
	b.WriteString("\r\n")
	writePartHeader(b, "text/html")
	b.WriteString(m.HTML)
	b.WriteString("\r\n--")
	b.Write(bound[:])
	b.WriteString("--\r\n")
}

// writePartHeader writes the header of an 8bit UTF-8 part of type typ and
// the empty line that ends it.
func writePartHeader(b *bytes.Buffer, typ string) {
	b.WriteString("Content-Transfer-Encoding: 8bit\r\nContent-Type: ")
	b.WriteString(typ)
	b.WriteString("; charset=UTF-8\r\n\r\n")
}

// foldAt is the length a header line is folded at where it has room to: the
// 78 characters RFC 5322 recommends, less the CRLF.
const foldAt = 76

// maxWord bounds a word of a folded header value, so that no line can
// exceed SMTP's 998 characters.
const maxWord = 900

// foldable reports whether writeFolded keeps every line of value within
// SMTP's limit: only a subject with a word of over 900 characters is not.
func foldable(value string) bool {
	for word := range strings.SplitSeq(value, " ") {
		if len(word) > maxWord {
			return false
		}
	}
	return true
}

// writeFolded writes a header field, name including ": ", folding value at
// spaces so that lines stay within foldAt where a space allows. Encoded
// words (RFC 2047) never exceed 75 characters and are separated by spaces,
// so an encoded subject always folds within it.
func writeFolded(b *bytes.Buffer, name, value string) {
	b.WriteString(name)
	line := len(name)
	for first := true; value != ""; first = false {
		word, rest, _ := strings.Cut(value, " ")
		if !first {
			if line+1+len(word) > foldAt {
				b.WriteString("\r\n")
				line = 0
			}
			b.WriteByte(' ')
			line++
		}
		b.WriteString(word)
		line += len(word)
		value = rest
	}
	b.WriteString("\r\n")
}
