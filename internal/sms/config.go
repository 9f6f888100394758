package sms

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/phone"
)

// Defaults applied by Config.WithDefaults.
const (
	// DefaultAPIURL is Twilio's own REST API.
	DefaultAPIURL = "https://api.twilio.com"
	// DefaultRatePerSecond is the pace of a deployment's texts when
	// CRIER_SMS_RATE is not set: 10 a second, ten long codes or a tenth
	// of a short code. The delivery workers keep it (package deliver).
	DefaultRatePerSecond = 10
	// DefaultConcurrency bounds the requests in flight to Twilio.
	DefaultConcurrency = 64
	// DefaultRequestTimeout bounds one API request when the caller's
	// context has no earlier deadline (twilio-go's own default).
	DefaultRequestTimeout = 10 * time.Second
	// DefaultIdleConnTimeout closes pooled connections idle for this long.
	DefaultIdleConnTimeout = 90 * time.Second
	// minIdleConnsPerHost is the floor of the default MaxIdleConnsPerHost:
	// Go's default of 2 churns sockets under concurrent sending.
	minIdleConnsPerHost = 64
)

// Config configures a Sender. The zero value of each field means its
// default; WithDefaults fills them in and New validates the result.
type Config struct {
	// AccountSID ("AC" and 32 hex digits) and AuthToken authenticate with
	// HTTP Basic auth. Both are required.
	AccountSID string
	AuthToken  string

	// Exactly one of From and MessagingServiceSID is required. From is an
	// E.164 number, a short code or an alphanumeric sender ID (up to 11
	// letters, digits and spaces, at least one letter); MessagingServiceSID
	// ("MG" and 32 hex digits) lets Twilio choose the sender from the
	// service's pool.
	From                string
	MessagingServiceSID string

	// APIURL is the base URL of the Twilio REST API (scheme, host, optional
	// port and path prefix). Empty means DefaultAPIURL. Requests keep their
	// path (/2010-04-01/Accounts/...) below it.
	APIURL string

	// Concurrency is the most API requests in flight at once (the pool's
	// connections to the API host); further sends wait for a connection.
	// Zero means DefaultConcurrency.
	Concurrency int
	// MaxIdleConnsPerHost is how many idle connections the pool keeps.
	// Zero means the larger of Concurrency and 64.
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes pooled connections idle this long. Zero means
	// DefaultIdleConnTimeout.
	IdleConnTimeout time.Duration

	// RequestTimeout bounds each API request, from sending the request to
	// reading the answer; the caller's context may end it earlier. Zero
	// means DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.APIURL == "" {
		c.APIURL = DefaultAPIURL
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = max(c.Concurrency, minIdleConnsPerHost)
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}

// validate reports the first problem with c (after WithDefaults), naming the
// field.
func (c Config) validate() error {
	switch {
	case c.AccountSID == "":
		return errors.New("AccountSID is required")
	case !isSID("AC", c.AccountSID):
		return errors.New(`AccountSID must be "AC" followed by 32 hex digits`)
	case c.AuthToken == "":
		return errors.New("AuthToken is required")
	case !isAlnum(c.AuthToken):
		// twilio-go refuses anything else before sending.
		return errors.New("AuthToken must contain only letters and digits")
	case c.From == "" && c.MessagingServiceSID == "":
		return errors.New("one of From and MessagingServiceSID is required")
	case c.From != "" && c.MessagingServiceSID != "":
		return errors.New("only one of From and MessagingServiceSID may be set")
	case c.From != "" && !validFrom(c.From):
		return fmt.Errorf("invalid From %q: neither an E.164 number, a short code nor an alphanumeric sender ID", c.From)
	case c.MessagingServiceSID != "" && !isSID("MG", c.MessagingServiceSID):
		return errors.New(`MessagingServiceSID must be "MG" followed by 32 hex digits`)
	case c.Concurrency < 0:
		return fmt.Errorf("invalid Concurrency %v: must not be negative", c.Concurrency)
	case c.MaxIdleConnsPerHost < 0:
		return fmt.Errorf("invalid MaxIdleConnsPerHost %v: must not be negative", c.MaxIdleConnsPerHost)
	case c.IdleConnTimeout < 0:
		return fmt.Errorf("invalid IdleConnTimeout %v: must not be negative", c.IdleConnTimeout)
	case c.RequestTimeout < 0:
		return fmt.Errorf("invalid RequestTimeout %v: must not be negative", c.RequestTimeout)
	}
	if _, err := parseAPIURL(c.APIURL); err != nil {
		return err
	}
	return nil
}

// parseAPIURL checks and parses an APIURL: http or https, a host, no query
// or fragment, no user info.
func parseAPIURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("APIURL %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("APIURL %q must be an absolute http or https URL", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("APIURL %q must not have user info, a query or a fragment", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func isSID(prefix, s string) bool {
	if len(s) != 34 || s[:2] != prefix {
		return false
	}
	for i := 2; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

func isHex(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z') {
			return false
		}
	}
	return true
}

// validFrom accepts an E.164 number, a short code (3 to 8 digits) or an
// alphanumeric sender ID (1 to 11 ASCII letters, digits and spaces with at
// least one letter).
func validFrom(s string) bool {
	if s[0] == '+' {
		return phone.IsE164(s)
	}
	if len(s) > 11 {
		return false
	}
	letters, digits := 0, 0
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b >= '0' && b <= '9':
			digits++
		case b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z':
			letters++
		case b == ' ':
		default:
			return false
		}
	}
	if letters == 0 {
		return digits >= 3 && digits <= 8 && digits == len(s) // short code
	}
	return strings.TrimSpace(s) == s
}

// IsAlphanumericSender reports whether from is an alphanumeric sender ID
// ("Care Alert"): one-way, so a recipient cannot reply to it.
func IsAlphanumericSender(from string) bool {
	if from == "" || from[0] == '+' || !validFrom(from) {
		return false
	}
	for i := 0; i < len(from); i++ {
		if b := from[i]; b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' {
			return true
		}
	}
	return false
}
