// Package config reads crier's configuration from CRIER_* environment
// variables. Every problem is reported as one line naming the variable and
// what is wrong with it. Only cmd/crier calls Load; packages take their own
// Config structs.
//
// A default that a package also applies to its own Config is that
// package's Default* constant, never a second literal here, so the two
// cannot drift; values only the process has (addresses, the shutdown
// grace) are defined here alone. A rate of 0 means unlimited everywhere.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crier-dev/crier/internal/alerting"
	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/fanout"
	"github.com/crier-dev/crier/internal/httpapi"
	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/render"
	"github.com/crier-dev/crier/internal/sms"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/webhook"
)

// Config is the whole of crier's configuration. Zero values of optional
// fields mean "not configured" (a channel without settings is disabled).
type Config struct {
	DatabaseURL string // CRIER_DATABASE_URL
	NATSURL     string // CRIER_NATS_URL, default nats://127.0.0.1:4222
	// NATSReplicas is CRIER_NATS_REPLICAS, the stream's replicas, default 1.
	NATSReplicas int
	// NATSAuth is how crier proves itself to NATS and checks NATS's
	// certificate: CRIER_NATS_CREDS or CRIER_NATS_NKEY, CRIER_NATS_TLS_CA,
	// CRIER_NATS_TLS_CERT and CRIER_NATS_TLS_KEY.
	NATSAuth stream.Auth
	HTTPAddr string // CRIER_HTTP_ADDR, default 127.0.0.1:8080
	// MetricsAddr is CRIER_METRICS_ADDR: a separate (internal) listener
	// for /metrics. Empty: /metrics is on the main listener, unless
	// CRIER_PUBLIC_URL is https (see MetricsOnMain).
	MetricsAddr string
	PublicURL   string // CRIER_PUBLIC_URL, default http://<HTTPAddr>

	SMTPURL  string // CRIER_SMTP_URL
	MailFrom string // CRIER_MAIL_FROM, required with CRIER_SMTP_URL
	SMTPPool int    // CRIER_SMTP_POOL, default 8

	TwilioAccountSID          string // CRIER_TWILIO_ACCOUNT_SID
	TwilioAuthToken           string // CRIER_TWILIO_AUTH_TOKEN
	TwilioFrom                string // CRIER_TWILIO_FROM
	TwilioMessagingServiceSID string // CRIER_TWILIO_MESSAGING_SERVICE_SID
	TwilioAPIURL              string // CRIER_TWILIO_API_URL

	// WebhookAllow is CRIER_WEBHOOK_ALLOW_PRIVATE: the private networks and
	// host:port pairs that webhook, Teams and Slack destinations may
	// resolve to (all others must be public addresses).
	WebhookAllow webhook.Allow

	// AckImpacts is CRIER_ACK_IMPACTS: the impacts whose incidents ask each
	// home to acknowledge their first update (default critical,major).
	AckImpacts []string
	// EscalateAfter is CRIER_ESCALATE_AFTER: by impact, how long after an
	// incident's first update a home that has not acknowledged is
	// escalated to (default critical=10m,major=30m).
	EscalateAfter map[string]time.Duration

	APITokens []string // CRIER_API_TOKENS, comma-separated
	// TrustedProxies is CRIER_TRUSTED_PROXIES: the reverse proxies (CIDRs or
	// addresses, comma-separated) whose CRIER_CLIENT_IP_HEADER counts.
	TrustedProxies []netip.Prefix
	// ClientIPHeader is CRIER_CLIENT_IP_HEADER: a header set by a trusted
	// reverse proxy (e.g. X-Forwarded-For) holding the client address that
	// the subscribe page's rate limits key on. Empty: the peer address.
	ClientIPHeader string

	EmailRate       float64       // CRIER_EMAIL_RATE, emails per second for the whole deployment; 0 = unlimited
	SMSRate         float64       // CRIER_SMS_RATE, texts per second for the whole deployment; default 10
	SMSMaxSegments  int           // CRIER_SMS_MAX_SEGMENTS, default 2
	MaxAttempts     int           // CRIER_MAX_ATTEMPTS, default 8
	MaxAge          time.Duration // CRIER_MAX_AGE, default 1h
	Lease           time.Duration // CRIER_LEASE, how long a claimed delivery stays with one process, default 2m
	RetryBackoff    time.Duration // CRIER_RETRY_BACKOFF, first delay between attempts, default 5s
	RetryMaxBackoff time.Duration // CRIER_RETRY_MAX_BACKOFF, longest delay between attempts, default 10m
	ShutdownGrace   time.Duration // CRIER_SHUTDOWN_GRACE, default 20s
	TimeZone        string        // CRIER_TIMEZONE, default Europe/London
	PhoneRegion     string        // CRIER_PHONE_REGION, default GB
	TemplatesDir    string        // CRIER_TEMPLATES_DIR, overrides the embedded templates
	TokenSecret     string        // CRIER_TOKEN_SECRET, key for manage/unsubscribe links
	LogFormat       string        // CRIER_LOG_FORMAT: json (default) or text
	LogLevel        string        // CRIER_LOG_LEVEL: debug, info (default), warn, error
	FanoutWorkers   int           // CRIER_FANOUT_WORKERS, default 4
	DeliveryWorkers int           // CRIER_DELIVERY_WORKERS, senders per channel, default 32

	// Abuse limits of the public pages, for the whole deployment, each
	// "BURST/WINDOW": up to BURST at once, regained evenly over WINDOW
	// (defaults: httpapi.Default*).
	LimitSubscribeClient  httpapi.Limit // CRIER_LIMIT_SUBSCRIBE_CLIENT, subscribe requests per client address, default 10/10m
	LimitSubscribeAddress httpapi.Limit // CRIER_LIMIT_SUBSCRIBE_ADDRESS, per phone number and per email address, default 3/30m
	LimitSMSClient        httpapi.Limit // CRIER_LIMIT_SMS_CLIENT, texted codes per client address, default 10/4h
	LimitCodeClient       httpapi.Limit // CRIER_LIMIT_CODE_CLIENT, code entries per client address, default 20/200s
	LimitSignInClient     httpapi.Limit // CRIER_LIMIT_SIGNIN_CLIENT, admin sign-in attempts per client address, default 10/5m
	LimitAuthFailClient   httpapi.Limit // CRIER_LIMIT_AUTHFAIL_CLIENT, wrong bearer tokens and session cookies per client address, default 20/10m

	// Alerts says how POST /v1/integrations/... notifications name
	// components: CRIER_ALERT_COMPONENT_LABEL (default "component") and
	// CRIER_ALERT_COMPONENTS, "label=value:component,..." for alerts
	// without that label.
	Alerts alerting.Mapping
}

// Error is a configuration problem with one variable.
type Error struct {
	Var    string
	Reason string
}

func (e *Error) Error() string { return e.Var + ": " + e.Reason }

// Load reads the configuration with getenv (os.Getenv in production).
func Load(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{
		DatabaseURL: r.url("CRIER_DATABASE_URL", "", "postgres", "postgresql"),
		NATSURL:     r.url("CRIER_NATS_URL", "nats://127.0.0.1:4222", "nats", "tls", "ws", "wss"),
		HTTPAddr:    r.str("CRIER_HTTP_ADDR", "127.0.0.1:8080"),
		MetricsAddr: r.str("CRIER_METRICS_ADDR", ""),
		NATSAuth: stream.Auth{
			CredsFile:   r.str("CRIER_NATS_CREDS", ""),
			NKeyFile:    r.str("CRIER_NATS_NKEY", ""),
			TLSCAFile:   r.str("CRIER_NATS_TLS_CA", ""),
			TLSCertFile: r.str("CRIER_NATS_TLS_CERT", ""),
			TLSKeyFile:  r.str("CRIER_NATS_TLS_KEY", ""),
		},

		NATSReplicas: r.int("CRIER_NATS_REPLICAS", 1, 1, 5),

		SMTPURL:  r.url("CRIER_SMTP_URL", "", "smtp", "smtps"),
		MailFrom: r.str("CRIER_MAIL_FROM", ""),
		SMTPPool: r.int("CRIER_SMTP_POOL", email.DefaultPoolSize, 1, 1024),

		TwilioAccountSID:          r.str("CRIER_TWILIO_ACCOUNT_SID", ""),
		TwilioAuthToken:           r.str("CRIER_TWILIO_AUTH_TOKEN", ""),
		TwilioFrom:                r.str("CRIER_TWILIO_FROM", ""),
		TwilioMessagingServiceSID: r.str("CRIER_TWILIO_MESSAGING_SERVICE_SID", ""),
		TwilioAPIURL:              r.url("CRIER_TWILIO_API_URL", "", "http", "https"),

		WebhookAllow:   r.webhookAllow("CRIER_WEBHOOK_ALLOW_PRIVATE"),
		APITokens:      r.list("CRIER_API_TOKENS"),
		AckImpacts:     r.impacts("CRIER_ACK_IMPACTS", DefaultAckImpacts),
		EscalateAfter:  r.escalateAfter("CRIER_ESCALATE_AFTER"),
		ClientIPHeader: r.str("CRIER_CLIENT_IP_HEADER", ""),
		TrustedProxies: r.prefixes("CRIER_TRUSTED_PROXIES"),

		EmailRate:       r.float("CRIER_EMAIL_RATE", 0),
		SMSRate:         r.float("CRIER_SMS_RATE", sms.DefaultRatePerSecond),
		SMSMaxSegments:  r.int("CRIER_SMS_MAX_SEGMENTS", render.DefaultSMSMaxSegments, 1, 10),
		MaxAttempts:     r.int("CRIER_MAX_ATTEMPTS", deliver.DefaultMaxAttempts, 1, 100),
		MaxAge:          r.duration("CRIER_MAX_AGE", deliver.DefaultMaxAge),
		Lease:           r.duration("CRIER_LEASE", deliver.DefaultLease),
		RetryBackoff:    r.duration("CRIER_RETRY_BACKOFF", deliver.DefaultBaseBackoff),
		RetryMaxBackoff: r.duration("CRIER_RETRY_MAX_BACKOFF", deliver.DefaultMaxBackoff),
		ShutdownGrace:   r.duration("CRIER_SHUTDOWN_GRACE", 20*time.Second),
		TimeZone:        r.str("CRIER_TIMEZONE", render.DefaultTimeZone),
		PhoneRegion:     strings.ToUpper(r.str("CRIER_PHONE_REGION", phone.DefaultRegion)),
		TemplatesDir:    r.str("CRIER_TEMPLATES_DIR", ""),
		TokenSecret:     r.str("CRIER_TOKEN_SECRET", ""),
		LogFormat:       r.oneOf("CRIER_LOG_FORMAT", "json", "json", "text"),
		LogLevel:        r.oneOf("CRIER_LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		FanoutWorkers:   r.int("CRIER_FANOUT_WORKERS", fanout.DefaultWorkers, 1, 256),
		DeliveryWorkers: r.int("CRIER_DELIVERY_WORKERS", deliver.DefaultConcurrency, 1, 1024),

		LimitSubscribeClient:  r.limit("CRIER_LIMIT_SUBSCRIBE_CLIENT", httpapi.DefaultSubscribePerClient),
		LimitSubscribeAddress: r.limit("CRIER_LIMIT_SUBSCRIBE_ADDRESS", httpapi.DefaultSubscribePerAddress),
		LimitSMSClient:        r.limit("CRIER_LIMIT_SMS_CLIENT", httpapi.DefaultSMSPerClient),
		LimitCodeClient:       r.limit("CRIER_LIMIT_CODE_CLIENT", httpapi.DefaultVerifyPerClient),
		LimitSignInClient:     r.limit("CRIER_LIMIT_SIGNIN_CLIENT", httpapi.DefaultSignInPerClient),
		LimitAuthFailClient:   r.limit("CRIER_LIMIT_AUTHFAIL_CLIENT", httpapi.DefaultAuthFailPerClient),

		Alerts: alerting.Mapping{
			ComponentLabel: r.str("CRIER_ALERT_COMPONENT_LABEL", alerting.DefaultComponentLabel),
			Components:     r.componentMap("CRIER_ALERT_COMPONENTS"),
		},
	}
	c.PublicURL = r.url("CRIER_PUBLIC_URL", "http://"+c.HTTPAddr, "http", "https")
	if r.err != nil {
		return Config{}, r.err
	}
	if err := c.check(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// check validates combinations of settings.
// MinAPITokenLen is the shortest bearer token accepted in
// CRIER_API_TOKENS: 32 characters of a random token are beyond guessing,
// with the limit on wrong tokens or without.
const MinAPITokenLen = 32

func (c Config) check() error {
	a := c.NATSAuth
	switch {
	case a.CredsFile != "" && a.NKeyFile != "":
		return &Error{"CRIER_NATS_CREDS", "and CRIER_NATS_NKEY are exclusive: set one"}
	case (a.TLSCertFile == "") != (a.TLSKeyFile == ""):
		return &Error{"CRIER_NATS_TLS_CERT", "and CRIER_NATS_TLS_KEY go together: set both or neither"}
	}
	for name, path := range map[string]string{
		"CRIER_NATS_CREDS": a.CredsFile, "CRIER_NATS_NKEY": a.NKeyFile, "CRIER_NATS_TLS_CA": a.TLSCAFile,
		"CRIER_NATS_TLS_CERT": a.TLSCertFile, "CRIER_NATS_TLS_KEY": a.TLSKeyFile,
	} {
		if path == "" {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return &Error{name, fmt.Sprintf("cannot read %s: %v", path, err)}
		}
		_ = f.Close()
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return &Error{"CRIER_METRICS_ADDR", fmt.Sprintf("must be host:port (%v)", err)}
		}
	}
	if c.ClientIPHeader != "" && len(c.TrustedProxies) == 0 {
		return &Error{"CRIER_TRUSTED_PROXIES", "is required with CRIER_CLIENT_IP_HEADER: name the reverse proxies whose header counts, or anyone can choose their address"}
	}
	for i, t := range c.APITokens {
		if n := len([]rune(t)); n < MinAPITokenLen {
			return &Error{"CRIER_API_TOKENS", fmt.Sprintf("token %d of %d is %d characters; use at least %d random ones (openssl rand -hex 24)", i+1, len(c.APITokens), n, MinAPITokenLen)}
		}
	}
	if c.SMTPURL != "" && c.MailFrom == "" {
		return &Error{"CRIER_MAIL_FROM", "is required when CRIER_SMTP_URL is set"}
	}
	if c.MailFrom != "" {
		if _, err := mail.ParseAddress(c.MailFrom); err != nil {
			return &Error{"CRIER_MAIL_FROM", fmt.Sprintf("is not an email address (%v)", err)}
		}
	}
	if c.TwilioAccountSID != "" || c.TwilioAuthToken != "" {
		switch {
		case c.TwilioAccountSID == "":
			return &Error{"CRIER_TWILIO_ACCOUNT_SID", "is required when CRIER_TWILIO_AUTH_TOKEN is set"}
		case !strings.HasPrefix(c.TwilioAccountSID, "AC"):
			return &Error{"CRIER_TWILIO_ACCOUNT_SID", "must start with AC"}
		case c.TwilioAuthToken == "":
			return &Error{"CRIER_TWILIO_AUTH_TOKEN", "is required when CRIER_TWILIO_ACCOUNT_SID is set"}
		case c.TwilioFrom == "" && c.TwilioMessagingServiceSID == "":
			return &Error{"CRIER_TWILIO_FROM", "or CRIER_TWILIO_MESSAGING_SERVICE_SID is required when CRIER_TWILIO_ACCOUNT_SID is set"}
		case c.TwilioFrom != "" && c.TwilioMessagingServiceSID != "":
			return &Error{"CRIER_TWILIO_FROM", "and CRIER_TWILIO_MESSAGING_SERVICE_SID are exclusive: set one"}
		}
	}
	if c.RetryMaxBackoff < c.RetryBackoff {
		return &Error{"CRIER_RETRY_MAX_BACKOFF", "must not be shorter than CRIER_RETRY_BACKOFF"}
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil {
		return &Error{"CRIER_TIMEZONE", fmt.Sprintf("unknown time zone %q", c.TimeZone)}
	}
	if len(c.PhoneRegion) != 2 {
		return &Error{"CRIER_PHONE_REGION", "must be a two-letter region code such as GB"}
	}
	return nil
}

// RequireDatabase reports a missing CRIER_DATABASE_URL.
func (c Config) RequireDatabase() error {
	if c.DatabaseURL == "" {
		return &Error{"CRIER_DATABASE_URL", "is required (e.g. postgres://postgres@127.0.0.1:5432/crier)"}
	}
	return nil
}

// EscalationDelay is how long after an incident's first update a home that
// has not acknowledged is escalated to: CRIER_ESCALATE_AFTER for impacts
// in CRIER_ACK_IMPACTS, and never (0) for the others. A drill asked to
// escalate (of any impact) rehearses a major incident's.
func (c Config) EscalationDelay(ev event.Event) time.Duration {
	impact := ev.Impact
	if ev.Kind == event.KindDrill {
		impact = "major"
	} else if !slices.Contains(c.AckImpacts, impact) {
		return 0
	}
	return c.EscalateAfter[impact]
}

// MetricsOnMain reports whether /metrics is served on the main listener:
// only when no CRIER_METRICS_ADDR is set and the public URL is not https,
// that is when crier is not exposed to the internet as it is.
func (c Config) MetricsOnMain() bool {
	return c.MetricsAddr == "" && !strings.HasPrefix(c.PublicURL, "https://")
}

// EmailEnabled reports whether email settings are present.
func (c Config) EmailEnabled() bool { return c.SMTPURL != "" }

// SMSEnabled reports whether Twilio settings are present.
func (c Config) SMSEnabled() bool { return c.TwilioAccountSID != "" }

// reader collects the first error while reading variables.
type reader struct {
	getenv func(string) string
	err    error
}

func (r *reader) fail(name, format string, args ...any) {
	if r.err == nil {
		r.err = &Error{name, fmt.Sprintf(format, args...)}
	}
}

func (r *reader) str(name, def string) string {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	return v
}

func (r *reader) url(name, def string, schemes ...string) string {
	v := r.str(name, def)
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil {
		// url.Parse errors quote the input, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		r.fail(name, "is not a URL: %v", err)
		return ""
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		r.fail(name, "scheme %q is not one of %s", u.Scheme, strings.Join(schemes, ", "))
		return ""
	}
	if u.Host == "" && u.Scheme != "postgres" && u.Scheme != "postgresql" {
		r.fail(name, "has no host")
		return ""
	}
	return v
}

func (r *reader) int(name string, def, min, max int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.fail(name, "must be a whole number from %d to %d, not %q", min, max, v)
		return def
	}
	return n
}

func (r *reader) float(name string, def float64) float64 {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 1e6 {
		r.fail(name, "must be a number of messages per second (0 = unlimited), not %q", v)
		return def
	}
	return f
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(name, "must be a positive duration such as 30s or 2h, not %q", v)
		return def
	}
	return d
}

// prefixes reads comma-separated CIDRs or addresses.
func (r *reader) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, entry := range r.list(name) {
		p, err := netip.ParsePrefix(entry)
		if err != nil {
			a, aerr := netip.ParseAddr(entry)
			if aerr != nil {
				r.fail(name, "must be CIDRs or addresses separated by commas, such as 10.0.0.0/8, not %q", entry)
				return nil
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

// componentMap reads "label=value:component,...".
func (r *reader) componentMap(name string) map[string]string {
	out := map[string]string{}
	for _, entry := range r.list(name) {
		match, component, ok := strings.Cut(entry, ":")
		label, value, ok2 := strings.Cut(match, "=")
		if !ok || !ok2 || label == "" || value == "" || component == "" {
			r.fail(name, "must be label=value:component entries separated by commas, such as job=emar-api:emar, not %q", entry)
			return nil
		}
		out[label+"="+value] = component
	}
	return out
}

// limit reads "BURST/WINDOW" (10/4h): BURST requests at once, regained
// evenly over WINDOW.
// DefaultAckImpacts are the impacts that ask for acknowledgement.
var DefaultAckImpacts = []string{"critical", "major"}

// impacts reads a comma-separated list of impacts; "none" turns
// acknowledgement off.
func (r *reader) impacts(name string, def []string) []string {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return def
	}
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case "none":
			return nil
		case "minor", "major", "critical":
			out = append(out, f)
		default:
			r.fail(name, "unknown impact %q (want critical, major, minor, or none to ask no acknowledgement)", f)
		}
	}
	return out
}

// DefaultEscalateAfter is CRIER_ESCALATE_AFTER's default.
const DefaultEscalateAfter = "critical=10m,major=30m"

// escalateAfter reads "impact=duration" pairs separated by commas.
func (r *reader) escalateAfter(name string) map[string]time.Duration {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		v = DefaultEscalateAfter
	}
	out := map[string]time.Duration{}
	for _, f := range strings.Split(v, ",") {
		impact, d, ok := strings.Cut(strings.TrimSpace(f), "=")
		impact = strings.ToLower(strings.TrimSpace(impact))
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if !ok || err != nil || dur < 0 || (impact != "critical" && impact != "major" && impact != "minor") {
			r.fail(name, "%q is not impact=duration (e.g. critical=10m,major=30m)", f)
			return nil
		}
		out[impact] = dur
	}
	return out
}

func (r *reader) webhookAllow(name string) webhook.Allow {
	a, err := webhook.ParseAllow(r.getenv(name))
	if err != nil {
		r.fail(name, "%v (want CIDRs, addresses or address:port pairs separated by commas)", err)
	}
	return a
}

func (r *reader) limit(name string, def httpapi.Limit) httpapi.Limit {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	b, w, ok := strings.Cut(v, "/")
	burst, err1 := strconv.Atoi(b)
	window, err2 := time.ParseDuration(w)
	if !ok || err1 != nil || err2 != nil || burst < 1 || burst > 1_000_000 || window < time.Second {
		r.fail(name, "must be BURST/WINDOW, such as 10/4h (10 at once, regained over 4 hours), not %q", v)
		return def
	}
	return httpapi.Limit{Every: window / time.Duration(burst), Burst: burst}
}

func (r *reader) oneOf(name, def string, allowed ...string) string {
	v := strings.ToLower(r.str(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	r.fail(name, "must be one of %s, not %q", strings.Join(allowed, ", "), v)
	return def
}

func (r *reader) list(name string) []string {
	var out []string
	for p := range strings.SplitSeq(r.getenv(name), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
