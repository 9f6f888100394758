package email

import (
	"errors"
	"net/mail"
	"strings"
)

// ErrBadAddress is wrapped by CheckAddress errors.
var ErrBadAddress = errors.New("not an email address")

// CheckAddress reports whether s is a bare email address (local@domain,
// no display name, no control characters, at most 254 bytes) that crier
// will store and send to.
func CheckAddress(s string) error {
	if s == "" || len(s) > 254 || strings.ContainsAny(s, "\r\n\x00<> ") {
		return ErrBadAddress
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return ErrBadAddress
	}
	at := strings.LastIndexByte(s, '@')
	if at < 1 || !strings.Contains(s[at+1:], ".") || strings.HasSuffix(s, ".") {
		return ErrBadAddress
	}
	return nil
}
