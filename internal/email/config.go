package email

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultPoolSize    = 8
	DefaultSendTimeout = 30 * time.Second
	DefaultIdleTimeout = 30 * time.Second
)

// Config configures a Sender. The zero value of every field but Settings and
// From means "use the default" (see WithDefaults).
type Config struct {
	// Settings say where the SMTP server is and how to reach it (see
	// ParseURL). Required.
	Settings Settings

	// From is the From header and, as a bare address, the envelope sender,
	// e.g. "crier <status@example.org>". Required.
	From string

	// ListID is the List-Id header (RFC 2919), e.g. "<incidents.example.org>"
	// or "Example status <incidents.example.org>"; angle brackets are added
	// when missing. Default: "<incidents.DOMAIN>" with the From address's
	// domain.
	ListID string

	// PoolSize bounds the SMTP connections the sender holds open at once,
	// and so the messages in flight. Default 8.
	PoolSize int

	// SendTimeout bounds one attempt on the wire: connecting (TCP, TLS,
	// EHLO, AUTH) when needed, and the MAIL, RCPT, DATA exchange. A shorter
	// deadline on the caller's context wins. Waiting for a free connection
	// is bounded only by the context. Default 30s.
	SendTimeout time.Duration

	// IdleTimeout closes connections that have not been used for this long.
	// Default 30s.
	IdleTimeout time.Duration

	// TLSConfig replaces the TLS client configuration, e.g. to trust a test
	// CA. ServerName defaults to Settings.Host and MinVersion to TLS 1.2.
	TLSConfig *tls.Config

	// HELO is the name sent with EHLO. Default: the machine's host name.
	HELO string
}

// WithDefaults returns a copy of c with every unset field set to its default.
func (c Config) WithDefaults() Config {
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = DefaultSendTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ListID == "" {
		if a, err := mail.ParseAddress(c.From); err == nil {
			if _, domain, ok := strings.Cut(a.Address, "@"); ok && domain != "" {
				c.ListID = "<incidents." + domain + ">"
			}
		}
	}
	if c.ListID != "" && !strings.HasSuffix(c.ListID, ">") {
		c.ListID = "<" + c.ListID + ">"
	}
	return c
}

// validate reports the first setting that cannot work, naming it.
func (c Config) validate() error {
	s := c.Settings
	switch {
	case s.Host == "":
		return errors.New("email: Settings.Host is empty")
	case s.Port < 1 || s.Port > 65535:
		return fmt.Errorf("email: Settings.Port %d out of range", s.Port)
	case s.Security < STARTTLS || s.Security > NoTLS:
		return fmt.Errorf("email: unknown Settings.Security %d", s.Security)
	case c.From == "":
		return errors.New("email: From is empty")
	}
	if hasControl(c.From) {
		return errors.New("email: From contains control characters")
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("email: From %q: %w", c.From, err)
	}
	if c.ListID == "" {
		return errors.New("email: ListID is empty")
	}
	if err := checkListID(c.ListID); err != nil {
		return err
	}
	switch {
	case c.PoolSize < 1:
		return fmt.Errorf("email: PoolSize %d, want at least 1", c.PoolSize)
	case c.SendTimeout <= 0:
		return fmt.Errorf("email: SendTimeout %v, want > 0", c.SendTimeout)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("email: IdleTimeout %v, want > 0", c.IdleTimeout)
	case hasControl(c.HELO) || strings.ContainsRune(c.HELO, ' '):
		return fmt.Errorf("email: HELO %q is not a host name", c.HELO)
	}
	return nil
}

// checkListID accepts printable ASCII ending in "<list-label>".
func checkListID(id string) error {
	for _, r := range id {
		if r < ' ' || r > '~' {
			return fmt.Errorf("email: ListID %q must be printable ASCII", id)
		}
	}
	i := strings.LastIndexByte(id, '<')
	if i < 0 || !strings.HasSuffix(id, ">") || len(id)-i < 3 || strings.ContainsAny(id[i+1:len(id)-1], "<> ") {
		return fmt.Errorf("email: ListID %q, want \"[phrase] <list.id.example>\"", id)
	}
	return nil
}

// hasControl reports whether s holds an ASCII control character (CR and LF
// among them).
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}
