package email

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Security is how the connection to the SMTP server is protected.
type Security int

const (
	// STARTTLS connects in plain text and upgrades with STARTTLS before
	// anything else; a server that does not offer STARTTLS gets no mail.
	// It is the zero value: the safe default.
	STARTTLS Security = iota
	// ImplicitTLS speaks TLS from the first byte (SMTPS, RFC 8314).
	ImplicitTLS
	// NoTLS sends in plain text: only for a local relay or Mailpit, and only
	// when the URL asks for it with tls=none.
	NoTLS
)

// String returns "starttls", "tls" or "none".
func (s Security) String() string {
	switch s {
	case STARTTLS:
		return "starttls"
	case ImplicitTLS:
		return "tls"
	case NoTLS:
		return "none"
	}
	return "Security(" + strconv.Itoa(int(s)) + ")"
}

// Default ports for the two URL schemes.
const (
	DefaultSubmissionPort = 587 // smtp:// (STARTTLS, or plain with tls=none)
	DefaultSMTPSPort      = 465 // smtps:// (implicit TLS)
)

// ErrBadURL is wrapped by every error from ParseURL.
var ErrBadURL = errors.New("invalid SMTP URL")

// Settings say where and how to reach the SMTP server: the parsed
// CRIER_SMTP_URL. String, GoString and LogValue mask the password, so
// Settings can be printed and logged.
type Settings struct {
	Host     string
	Port     int
	Username string
	Password string `json:"-"`
	Security Security
	// NoPipelining (pipelining=off) sends MAIL, RCPT and DATA one at a
	// time, each waiting for its reply, even to a server that offers
	// PIPELINING (RFC 2920): for a relay whose pipelining is broken.
	NoPipelining bool
	// NoChunking (chunking=off) sends messages with DATA rather than BDAT
	// (RFC 3030) even to a server that offers CHUNKING and PIPELINING.
	NoChunking bool
}

// ParseURL parses an SMTP server URL:
//
//	smtp://user:pass@host:587        STARTTLS, required (default port 587)
//	smtps://user:pass@host:465       implicit TLS (default port 465)
//	smtp://host:1025?tls=none        plain text, only when asked for
//
// The userinfo is percent-decoded, so a password with '@', ':' or '/' is
// written %40, %3A, %2F. The query may hold tls, with the values starttls
// or none for smtp:// and tls for smtps://, and pipelining and chunking,
// each on (the default: used when the server offers it) or off. Errors
// wrap ErrBadURL and never repeat the password.
func ParseURL(raw string) (Settings, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		// url.Error repeats the whole URL, password included: keep only
		// the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Settings{}, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	var s Settings
	switch strings.ToLower(u.Scheme) {
	case "smtp":
		s.Security, s.Port = STARTTLS, DefaultSubmissionPort
	case "smtps":
		s.Security, s.Port = ImplicitTLS, DefaultSMTPSPort
	case "":
		return Settings{}, fmt.Errorf("%w: no scheme (want smtp:// or smtps://)", ErrBadURL)
	default:
		return Settings{}, fmt.Errorf("%w: unsupported scheme %q (want smtp or smtps)", ErrBadURL, u.Scheme)
	}
	if u.Opaque != "" {
		return Settings{}, fmt.Errorf("%w: want %s://host[:port]", ErrBadURL, u.Scheme)
	}
	s.Host = u.Hostname()
	if s.Host == "" {
		return Settings{}, fmt.Errorf("%w: missing host", ErrBadURL)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Settings{}, fmt.Errorf("%w: bad port %q (want 1-65535)", ErrBadURL, p)
		}
		s.Port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return Settings{}, fmt.Errorf("%w: empty port", ErrBadURL)
	}
	if u.Path != "" && u.Path != "/" {
		return Settings{}, fmt.Errorf("%w: unexpected path %q", ErrBadURL, u.Path)
	}
	if u.User != nil {
		s.Username = u.User.Username()
		s.Password, _ = u.User.Password()
	}
	if err := s.applyQuery(u); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// applyQuery sets what the URL's query asks for: tls, pipelining and
// chunking.
func (s *Settings) applyQuery(u *url.URL) error {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fmt.Errorf("%w: bad query: %v", ErrBadURL, err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return fmt.Errorf("%w: %s given %d times", ErrBadURL, k, len(v))
		}
		switch k {
		case "tls":
			if err := s.applyTLS(u.Scheme, v[0]); err != nil {
				return err
			}
		case "pipelining", "chunking":
			off, ok := map[string]bool{"on": false, "off": true}[strings.ToLower(v[0])]
			if !ok {
				return fmt.Errorf("%w: unknown %s value %q (want on or off)", ErrBadURL, k, v[0])
			}
			if k == "pipelining" {
				s.NoPipelining = off
			} else {
				s.NoChunking = off
			}
		default:
			return fmt.Errorf("%w: unknown parameter %q (tls, pipelining and chunking are known)", ErrBadURL, k)
		}
	}
	return nil
}

// applyTLS sets the security that tls=value asks for with scheme.
func (s *Settings) applyTLS(scheme, value string) error {
	switch mode := strings.ToLower(value); {
	case s.Security == STARTTLS && mode == "starttls":
	case s.Security == STARTTLS && mode == "none":
		s.Security = NoTLS
	case s.Security == ImplicitTLS && mode == "tls":
	case s.Security == ImplicitTLS && mode == "none":
		return fmt.Errorf("%w: smtps:// cannot have tls=none (use smtp://…?tls=none)", ErrBadURL)
	default:
		want := "starttls or none"
		if s.Security == ImplicitTLS {
			want = "tls"
		}
		return fmt.Errorf("%w: unknown tls value %q for %s:// (want %s)", ErrBadURL, value, scheme, want)
	}
	return nil
}

// Addr returns "host:port".
func (s Settings) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// String returns the settings as a URL with the password replaced by
// "xxxxx".
func (s Settings) String() string {
	u := url.URL{Scheme: "smtp", Host: s.Addr()}
	q := url.Values{}
	switch s.Security {
	case ImplicitTLS:
		u.Scheme = "smtps"
	case NoTLS:
		q.Set("tls", "none")
	}
	if s.NoPipelining {
		q.Set("pipelining", "off")
	}
	if s.NoChunking {
		q.Set("chunking", "off")
	}
	u.RawQuery = q.Encode()
	switch {
	case s.Password != "":
		u.User = url.UserPassword(s.Username, "xxxxx")
	case s.Username != "":
		u.User = url.User(s.Username)
	}
	return u.String()
}

// GoString masks the password for %#v as well.
func (s Settings) GoString() string { return "email.Settings(" + strconv.Quote(s.String()) + ")" }

// LogValue logs the settings without the password.
func (s Settings) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", s.Host),
		slog.Int("port", s.Port),
		slog.String("username", s.Username),
		slog.Bool("password_set", s.Password != ""),
		slog.String("tls", s.Security.String()),
	)
}
