// Package redact keeps personal data and secrets out of crier's logs.
//
// Email masks an address to its first character and domain
// ("j***@example.org"), Phone masks a number to its country code and last
// digits ("+44******3456", see phone.Mask), and String masks every email
// address, E.164 number and URL password found in free text. Handler wraps a
// slog.Handler so that every record passes through String: the message, every
// string attribute, every error (a driver or SMTP error that quotes an
// address) and every other value whose printed form holds one; attributes
// whose key names a secret (token, password, secret, authorization, …) are
// replaced by "[REDACTED]" whatever their value.
//
// cmd/crier installs Handler in front of the JSON or text handler, so library
// code cannot leak a subscriber's address by accident.
package redact

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"

	"github.com/crier-dev/crier/internal/phone"
)

// Redacted replaces the value of an attribute whose key names a secret.
const Redacted = "[REDACTED]"

// Email masks an email address to the first character of its local part
// and its domain: "jane@example.org" becomes "j***@example.org". Something
// without an "@" is masked whole.
func Email(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return strings.Repeat("*", min(len(addr), 8))
	}
	local, domain := addr[:at], addr[at+1:]
	if local == "" {
		return "***@" + domain
	}
	return local[:1] + "***@" + domain
}

// Destination masks a destination URL to its scheme and host:
// "https://example.webhook.office.com/webhookb2/…?sig=…" becomes
// "https://example.webhook.office.com/…". A Teams or Slack webhook URL is
// itself the credential to post to the channel.
func Destination(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "***"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// Phone masks a phone number, keeping its country code and last digits
// ("+447400123456" becomes "+44******3456"); see phone.Mask.
func Phone(number string) string { return phone.Mask(number) }

var (
	// emailRe is deliberately loose on the domain (no dot needed) so that
	// "ops@localhost" is masked too; the local part leaves out "*" so that
	// an already masked value is not masked again.
	emailRe = regexp.MustCompile(`[A-Za-z0-9._%+'-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*`)
	// phoneRe is an E.164 number; the characters around it are checked
	// separately (Go's regexp has no look-behind).
	phoneRe = regexp.MustCompile(`\+[1-9][0-9]{6,14}`)
	// userinfoRe is "scheme://user:password@" in a URL.
	userinfoRe = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:]*):([^\s/?#@]*)@`)
)

// URLs returns a comma-separated list of URLs with the credentials in
// each replaced: a password by ***, and a user name standing alone (NATS's
// token form, nats://TOKEN@host) by *** too, since it may be the secret.
// Whatever does not parse as a URL is replaced whole.
func URLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		switch {
		case err != nil:
			parts[i] = "(unreadable URL)"
		case u.User == nil:
			parts[i] = u.String()
		default:
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "***")
			} else {
				u.User = url.User("***")
			}
			parts[i] = strings.Replace(u.String(), "%2A%2A%2A", "***", -1)
		}
	}
	return strings.Join(parts, ",")
}

// String returns s with every email address, E.164 phone number and URL
// password masked. It returns s itself when there is nothing to mask.
func String(s string) string {
	if strings.Contains(s, "@") {
		if strings.Contains(s, "://") {
			s = userinfoRe.ReplaceAllString(s, "$1:***@")
		}
		s = replace(s, emailRe, func(s string, start, end int) (string, bool) {
			// The user name in a URL ("postgres://crier@db:5432") is not an
			// address; its password was masked above.
			if strings.HasSuffix(s[:start], "://") {
				return "", false
			}
			return Email(s[start:end]), true
		})
	}
	if strings.Contains(s, "+") {
		s = replace(s, phoneRe, func(s string, start, end int) (string, bool) {
			if start > 0 && isWordByte(s[start-1]) || end < len(s) && isDigit(s[end]) {
				return "", false
			}
			return phone.Mask(s[start:end]), true
		})
	}
	return s
}

// replace rewrites the matches of re in s for which f says so.
func replace(s string, re *regexp.Regexp, f func(s string, start, end int) (string, bool)) string {
	matches := re.FindAllStringIndex(s, -1)
	if matches == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range matches {
		r, ok := f(s, m[0], m[1])
		if !ok {
			continue
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(r)
		last = m[1]
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isWordByte(c byte) bool { return isDigit(c) || c == '_' || c|0x20 >= 'a' && c|0x20 <= 'z' }

// secretKeys are the substrings of an attribute key (compared in lower
// case) that mark its value as a secret.
var secretKeys = []string{"password", "passwd", "secret", "token", "authorization", "api_key", "apikey", "cookie", "credential"}

// SecretKey reports whether an attribute with this key holds a secret.
func SecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// Attr returns a with its value redacted: a secret key's value replaced by
// Redacted, addresses and numbers masked in strings, errors, groups and any
// other value whose printed form holds one.
func Attr(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	if SecretKey(a.Key) {
		if a.Value.Kind() == slog.KindString && a.Value.String() == "" {
			return a
		}
		return slog.String(a.Key, Redacted)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); needsLook(s) {
			a.Value = slog.StringValue(String(s))
		}
	case slog.KindGroup:
		attrs := a.Value.Group()
		out := make([]slog.Attr, len(attrs))
		for i, g := range attrs {
			out[i] = Attr(g)
		}
		a.Value = slog.GroupValue(out...)
	case slog.KindAny:
		var s string
		if err, ok := a.Value.Any().(error); ok {
			s = err.Error()
		} else {
			s = fmt.Sprintf("%+v", a.Value.Any())
		}
		if needsLook(s) {
			if r := String(s); r != s {
				a.Value = slog.StringValue(r)
			}
		}
	}
	return a
}

func needsLook(s string) bool { return strings.ContainsAny(s, "@+") }

// Handler is a slog.Handler that redacts every record (see the package
// comment) before passing it on.
type Handler struct {
	next slog.Handler
}

// NewHandler wraps next.
func NewHandler(next slog.Handler) *Handler { return &Handler{next: next} }

// Enabled reports whether the wrapped handler handles level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle redacts the message and attributes of r and passes the result on.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	if needsLook(r.Message) {
		out.Message = String(r.Message)
	}
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(Attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs redacts attrs once and returns a handler that adds them.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = Attr(a)
	}
	return &Handler{next: h.next.WithAttrs(out)}
}

// WithGroup returns a handler that puts later attributes in the group.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name)}
}
