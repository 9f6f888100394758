package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
)

// Defaults.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxResponse = 64 << 10
)

// Config configures a Sender. Zero fields take the defaults.
type Config struct {
	// Allow names the private destinations that may be called
	// (CRIER_WEBHOOK_ALLOW_PRIVATE); every other one must be public.
	Allow Allow
	// Signed makes every request carry the Standard Webhooks headers,
	// signed with Message.Secret (the webhook channel); Teams and Slack
	// URLs are secrets themselves and get none.
	Signed bool
	// Timeout bounds one request, connection to last byte (default 10s).
	Timeout time.Duration
	// MaxResponse is how much of an answer's body is read (default 64 KiB);
	// the rest is not.
	MaxResponse int64
	// RootCAs, when set, replaces the system's roots (tests).
	RootCAs *x509.CertPool
	// Resolver looks names up (default net.DefaultResolver; tests give
	// one whose answers they change).
	Resolver *net.Resolver
	// UserAgent is sent with every request (default "crier-webhook").
	UserAgent string
	// Now returns the time signed (default time.Now).
	Now func() time.Time
}

// Sender posts JSON to a destination URL: a deliver.Sender for the
// webhook, teams and slack channels. Message.To is the URL and
// Message.Body the JSON. Signed, Message.Secret is the destination's
// secret and webhook-id the delivery id, so a retry of one delivery
// carries the same id.
type Sender struct {
	cfg    Config
	client *http.Client
}

// New returns a Sender.
func New(cfg Config) *Sender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponse <= 0 {
		cfg.MaxResponse = DefaultMaxResponse
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "crier-webhook"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	tr := &http.Transport{
		// No proxy from the environment: it would dial on crier's behalf,
		// past the address check.
		Proxy:                 nil,
		DialContext:           cfg.Allow.dialer(cfg.Resolver).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Sender{cfg: cfg, client: &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// A redirect is an answer, not an instruction: following it would
		// let a destination send crier anywhere, private addresses included.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Close closes idle connections.
func (s *Sender) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// CheckURL is Allow.CheckURL with the sender's resolver.
func (s *Sender) CheckURL(ctx context.Context, raw string) error {
	return s.cfg.Allow.CheckURL(ctx, s.cfg.Resolver, raw)
}

// CheckURL reports whether raw is a destination crier may call: https,
// with a host, no user information, resolving (with r) to permitted
// addresses only. It is the check made when a destination is saved; a
// Sender checks the address again at every connection.
func (a Allow) CheckURL(ctx context.Context, r *net.Resolver, raw string) error {
	u, err := parseURL(raw)
	if err != nil {
		return err
	}
	port := uint16(443)
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return fmt.Errorf("port %q: %w", p, err)
		}
		port = uint16(n)
	}
	return a.CheckHost(ctx, r, u.Hostname(), port)
}

// ErrNotHTTPS is returned for a destination URL that is not https.
var ErrNotHTTPS = errors.New("only https URLs are allowed")

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	switch {
	case u.Scheme != "https":
		return nil, ErrNotHTTPS
	case u.Hostname() == "":
		return nil, errors.New("the URL has no host")
	case u.User != nil:
		return nil, errors.New("the URL must not carry a user or password")
	}
	return u, nil
}

// Send posts m and maps the answer:
//   - 2xx: sent;
//   - 410 Gone: permanent, and the destination is disabled (OptOut);
//   - 408, 429: transient, after Retry-After when given;
//   - other 4xx, 3xx (redirects are not followed): permanent;
//   - 5xx, timeouts, connection failures: transient;
//   - a destination that is not https or resolves to a forbidden address:
//     permanent.
func (s *Sender) Send(ctx context.Context, m deliver.Message) (string, error) {
	u, err := parseURL(m.To)
	if err != nil {
		return "", deliver.Permanent("url", err)
	}
	id := strconv.FormatInt(m.DeliveryID, 10)
	now := s.cfg.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(m.Body))
	if err != nil {
		return "", deliver.Permanent("url", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	if s.cfg.Signed {
		key, err := SecretKey(m.Secret)
		if err != nil {
			return "", deliver.Permanent("secret", err)
		}
		req.Header.Set(HeaderID, id)
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(HeaderSignature, Sign(key, id, now, m.Body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// The client's error quotes the URL, whose path and query are the
		// credential of a Teams or Slack webhook: name the host only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("post to %s: %w", u.Host, ue.Err)
		}
		if errors.Is(err, ErrForbiddenAddress) {
			return "", deliver.Permanent("address", err)
		}
		if ctx.Err() != nil {
			return "", deliver.Transient("", ctx.Err())
		}
		return "", deliver.Transient("network", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, s.cfg.MaxResponse))
	code := strconv.Itoa(resp.StatusCode)
	switch st := resp.StatusCode; {
	case st >= 200 && st < 300:
		return id, nil
	case st == http.StatusGone:
		return "", &deliver.PermanentError{Code: code, OptOut: true, Err: errors.New("the destination answered 410 Gone: it is disabled")}
	case st == http.StatusRequestTimeout || st == http.StatusTooManyRequests || st >= 500:
		return "", &deliver.TransientError{Code: code, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now), Err: fmt.Errorf("the destination answered %s", resp.Status)}
	case st >= 300 && st < 400:
		return "", deliver.Permanent(code, fmt.Errorf("the destination answered %s: redirects are not followed", resp.Status))
	default:
		return "", deliver.Permanent(code, fmt.Errorf("the destination answered %s", resp.Status))
	}
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
