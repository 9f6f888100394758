package email

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"

	"github.com/crier-dev/crier/internal/deliver"
)

const (
	headerListID        gomail.Header = "List-Id"
	headerAutoSubmitted gomail.Header = "Auto-Submitted"
	oneClickPost                      = "List-Unsubscribe=One-Click"
)

// parseRecipient checks the recipient before anything is sent.
func parseRecipient(to string) (*mail.Address, error) {
	if to == "" {
		return nil, fmt.Errorf("%w: no recipient", ErrInvalidMessage)
	}
	if hasControl(to) {
		return nil, fmt.Errorf("%w: recipient %q contains control characters", ErrInvalidMessage, to)
	}
	a, err := mail.ParseAddress(to)
	if err != nil {
		return nil, fmt.Errorf("%w: recipient %q: %v", ErrInvalidMessage, to, err)
	}
	return a, nil
}

// messageID returns the Message-ID to use, without angle brackets: the
// message's own, or one derived from the delivery when it has none.
func (s *Sender) messageID(m deliver.Message) (string, error) {
	id := strings.TrimSpace(m.MessageID)
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	if id == "" {
		if m.DeliveryID != 0 {
			return "delivery-" + strconv.FormatInt(m.DeliveryID, 10) + "@" + s.domain, nil
		}
		var b [16]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:]) + "@" + s.domain, nil
	}
	left, right, ok := strings.Cut(id, "@")
	if !ok || left == "" || right == "" || strings.Contains(right, "@") {
		return "", fmt.Errorf("%w: Message-ID %q, want left@right", ErrInvalidMessage, id)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == '<' || c == '>' || c == '"' || c == '\\' {
			return "", fmt.Errorf("%w: Message-ID %q holds %q", ErrInvalidMessage, id, c)
		}
	}
	return id, nil
}

// listUnsubscribe returns the List-Unsubscribe value (RFC 2369) with both
// targets when given, and whether it holds an https URL, which makes one-click
// unsubscribing (RFC 8058) possible.
func listUnsubscribe(m deliver.Message) (value string, oneClick bool, err error) {
	uris := make([]string, 0, 2)
	if raw := strings.TrimSpace(m.UnsubscribeURL); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", false, fmt.Errorf("%w: UnsubscribeURL %q is not an http(s) URL", ErrInvalidMessage, raw)
		}
		oneClick = u.Scheme == "https"
		uris = append(uris, u.String())
	}
	if raw := strings.TrimSpace(m.UnsubscribeMailto); raw != "" {
		if !strings.HasPrefix(strings.ToLower(raw), "mailto:") {
			raw = "mailto:" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || u.Opaque == "" {
			return "", false, fmt.Errorf("%w: UnsubscribeMailto %q is not a mailto: URL", ErrInvalidMessage, raw)
		}
		uris = append(uris, u.String())
	}
	for i, u := range uris {
		if hasControl(u) || strings.ContainsAny(u, "<> ") {
			return "", false, fmt.Errorf("%w: unsubscribe target %q cannot go in a header", ErrInvalidMessage, u)
		}
		// RFC 2369: commas inside a URL must be escaped.
		uris[i] = strings.ReplaceAll(u, ",", "%2C")
	}
	if len(uris) == 0 {
		return "", false, nil
	}
	return "<" + strings.Join(uris, ">,\r\n <") + ">", oneClick, nil
}

// cleanSubject turns every run of control characters (CR and LF among them)
// into one space, so a subject can never start a new header line.
func cleanSubject(s string) string {
	if !hasControl(s) {
		return strings.TrimSpace(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// maxLine is the longest line SMTP carries, without its CRLF (RFC 5321,
// section 4.5.3.1.6).
const maxLine = 998

// eightBitSafe reports whether body can go as it is, in 8bit transfer
// encoding (RFC 6152): valid UTF-8 without NUL or CR, and no line longer
// than SMTP allows. The rendered notifications always are, unless an event
// body holds a paragraph of over 998 bytes.
func eightBitSafe(body string) bool {
	if !utf8.ValidString(body) || strings.IndexByte(body, 0) >= 0 || strings.IndexByte(body, '\r') >= 0 {
		return false
	}
	for len(body) > maxLine {
		i := strings.IndexByte(body, '\n')
		if i < 0 || i > maxLine {
			return false
		}
		body = body[i+1:]
	}
	return true
}

// partEncoding is the transfer encoding of one body part: 8bit when the
// server takes it and the text is safe as it is, which costs nothing to
// write, else quoted-printable.
func partEncoding(eightBit bool, body string) gomail.Encoding {
	if eightBit && eightBitSafe(body) {
		return gomail.NoEncoding
	}
	return gomail.EncodingQP
}

// compose writes the message in RFC 5322 form to w: multipart/alternative
// with a text/plain and a text/html part (UTF-8), or the single part given.
// Each part is in 8bit when eightBit (the server offers 8BITMIME) and its
// text allows, else quoted-printable. It reports whether any part is 8bit.
// When every part can go in 8bit and lean is set, composeLean writes it;
// otherwise go-mail does.
func (s *Sender) compose(w *bytes.Buffer, m deliver.Message, to *mail.Address, msgID string, eightBit, lean bool) (used8bit bool, err error) {
	if m.Text == "" && m.HTML == "" {
		return false, fmt.Errorf("%w: no text and no HTML body", ErrInvalidMessage)
	}
	unsub, oneClick, err := listUnsubscribe(m)
	if err != nil {
		return false, err
	}
	if lean && eightBit && (m.Text == "" || eightBitSafe(m.Text)) && (m.HTML == "" || eightBitSafe(m.HTML)) {
		subject, toField := mime.QEncoding.Encode("UTF-8", cleanSubject(m.Subject)), to.String()
		// Addresses are not folded: one with a display name too long
		// for a line goes through go-mail, as does such a subject.
		if foldable(subject) && len(toField) <= maxWord && len(s.fromField) <= maxWord {
			s.composeLean(w, m, subject, toField, msgID, unsub, oneClick)
			return true, nil
		}
	}
	msg := gomail.NewMsg(
		gomail.WithCharset(gomail.CharsetUTF8),
		gomail.WithEncoding(gomail.EncodingQP),
		gomail.WithNoDefaultUserAgent(),
	)
	msg.FromMailAddress(s.from)
	msg.ToMailAddress(to)
	msg.Subject(cleanSubject(m.Subject))
	msg.SetMessageIDWithValue(msgID)
	msg.SetDateWithValue(time.Now())
	// Preformatted: written as given, not RFC 2047-encoded; checked above
	// and in Config.validate to hold no CR or LF.
	msg.SetGenHeaderPreformatted(headerListID, s.cfg.ListID)
	msg.SetGenHeaderPreformatted(headerAutoSubmitted, "auto-generated")
	if unsub != "" {
		msg.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribe, unsub)
		if oneClick {
			msg.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribePost, oneClickPost)
		}
	}
	part := func(body string) gomail.PartOption {
		enc := partEncoding(eightBit, body)
		used8bit = used8bit || enc == gomail.NoEncoding
		return gomail.WithPartEncoding(enc)
	}
	switch {
	case m.Text != "" && m.HTML != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.Text, part(m.Text))
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML, part(m.HTML))
	case m.HTML != "":
		msg.SetBodyString(gomail.TypeTextHTML, m.HTML, part(m.HTML))
	default:
		msg.SetBodyString(gomail.TypeTextPlain, m.Text, part(m.Text))
	}
	if _, err := msg.WriteTo(w); err != nil {
		return false, fmt.Errorf("email: compose message: %w", err)
	}
	return used8bit, nil
}
