// Package sms sends text messages through Twilio's Programmable Messaging
// REST API with twilio-go, and verifies the signatures of Twilio's webhooks.
//
// A Sender is safe for concurrent use and meant to be shared by every SMS
// worker of a process: it owns the connection pool. It does not pace: the
// deployment's pace (CRIER_SMS_RATE) is kept by the delivery workers'
// claims, across processes (package deliver).
//
// Send's errors are typed for the retry policy (see package deliver):
//
//   - HTTP 401 (Twilio 20003, credentials refused), 20005 and 10001 (the
//     account is not active), 21212 and 21606 (the From number is not
//     valid, or not one of the account's), 21408 (the account may not send
//     to the region): *deliver.ChannelFault, because the fault is the
//     account's configuration, not the message; the channel pauses, and the
//     message goes once it is fixed.
//   - Twilio 21211 (invalid number), 21614 (not a mobile number) and every
//     other 4xx answer except 429: *deliver.PermanentError;
//     21610 (the recipient replied STOP) also sets OptOut.
//   - HTTP 429 or Twilio 20429: *deliver.TransientError with RetryAfter
//     from the Retry-After header.
//   - 5xx answers, network errors, timeouts and cancellation:
//     *deliver.TransientError (RetryAfter set when the answer had one).
//
// The Twilio answer itself is an *APIError inside the typed error.
package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twilio/twilio-go/client"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/phone"
)

// maxRetryAfter bounds the delay taken from a Retry-After header.
const maxRetryAfter = time.Hour

// Sender sends SMS through Twilio. Create it with New and share it: it holds
// a keep-alive connection pool (HTTP/1.1,
// honouring HTTPS_PROXY and NO_PROXY like Go's default transport).
type Sender struct {
	cfg       Config
	base      *url.URL // APIURL, or nil to leave Twilio's URLs alone
	transport *http.Transport
	creds     *client.Credentials
	userAgent []string // appended to twilio-go's User-Agent
	// messagesURL is the create-message resource of the account.
	messagesURL string
	closeOnce   sync.Once
}

// New returns a Sender for cfg (defaults applied), or an error naming the
// first invalid setting.
func New(cfg Config) (*Sender, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sms: config: %w", err)
	}
	base, _ := parseAPIURL(cfg.APIURL) // validated
	if base.String() == DefaultAPIURL {
		base = nil
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	s := &Sender{
		cfg:  cfg,
		base: base,
		transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			MaxIdleConns:          cfg.MaxIdleConnsPerHost,
			MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
			MaxConnsPerHost:       cfg.Concurrency,
			IdleConnTimeout:       cfg.IdleConnTimeout,
			TLSHandshakeTimeout:   5 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		creds:       client.NewCredentials(cfg.AccountSID, cfg.AuthToken),
		userAgent:   []string{"crier"},
		messagesURL: fmt.Sprintf(messagesURLFormat, cfg.AccountSID),
	}
	return s, nil
}

// Send sends m.Text to m.To (E.164) from the configured From or Messaging
// Service, asking Twilio to report delivery to m.StatusCallback when it is
// set, and returns the message SID ("SM…").
//
// Send makes one API request bounded
// by ctx and Config.RequestTimeout. twilio-go takes no context, so Send
// gives each call its own HTTP client whose RoundTripper carries ctx into
// the request; cancelling ctx aborts the request at once. Errors are typed
// as described in the package documentation.
//
// Twilio may have accepted a message whose answer was lost (a timeout, a
// broken connection): such errors are transient, so a retry may send the
// text twice. Delivery is at least once.
func (s *Sender) Send(ctx context.Context, m deliver.Message) (string, error) {
	switch {
	case m.To == "":
		return "", &deliver.PermanentError{Err: errors.New("sms: the message has no recipient")}
	case !phone.IsE164(m.To):
		return "", &deliver.PermanentError{Err: fmt.Errorf("sms: recipient %s is not an E.164 number", phone.Mask(m.To))}
	case m.Text == "":
		return "", &deliver.PermanentError{Err: errors.New("sms: the message has no text")}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()

	var ex exchange
	sid, err := s.create(ctx, &ex, m)
	if err != nil {
		return "", classify(ctx, &ex, err)
	}
	if sid == "" {
		// Accepted, presumably, but without a SID to track it by.
		return "", &deliver.TransientError{Err: fmt.Errorf("sms: Twilio answered HTTP %d without a message SID", ex.status)}
	}
	return sid, nil
}

// messagesURLFormat is the create-message resource, which twilio-go's request
// handler resolves against TWILIO_EDGE/TWILIO_REGION (not read here: see
// handler) and the roundTripper then against APIURL.
const messagesURLFormat = "https://api.twilio.com/2010-04-01/Accounts/%s/Messages.json"

// formHeaders are the headers of a create-message request.
var formHeaders = map[string]any{"Content-Type": "application/x-www-form-urlencoded"}

// created is the part of Twilio's Message resource that Send uses.
type created struct {
	SID string `json:"sid"`
}

// maxAnswer bounds the answer read; a Message resource is about 1 KiB.
const maxAnswer = 1 << 20

// answers recycles the buffers that answers are read into.
var answers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// create makes the create-message request through twilio-go's request
// handler (its credentials, User-Agent and error decoding) with the same
// form fields as its ApiService.CreateMessage, and returns the SID. It
// reads only the SID from the answer: CreateMessage decodes the whole
// resource into some thirty pointer fields, which was a fifth of the
// allocations of a send.
func (s *Sender) create(ctx context.Context, ex *exchange, m deliver.Message) (string, error) {
	data := make(url.Values, 4)
	data.Set("To", m.To)
	data.Set("Body", m.Text)
	if s.cfg.From != "" {
		data.Set("From", s.cfg.From)
	} else {
		data.Set("MessagingServiceSid", s.cfg.MessagingServiceSID)
	}
	if m.StatusCallback != "" {
		data.Set("StatusCallback", m.StatusCallback)
	}
	if !m.Expires.IsZero() {
		data.Set("ValidityPeriod", strconv.Itoa(validityPeriod(time.Until(m.Expires))))
	}
	resp, err := s.handler(ctx, ex).Post(s.messagesURL, data, maps.Clone(formHeaders), "")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	buf := answers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			answers.Put(buf)
		}
	}()
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxAnswer)); err != nil {
		return "", err
	}
	var c created
	if err := json.Unmarshal(buf.Bytes(), &c); err != nil {
		return "", err
	}
	return c.SID, nil
}

// Twilio's bounds of ValidityPeriod, in seconds (error 21624 outside them).
const (
	minValidity = 1
	maxValidity = 36_000
)

// validityPeriod is Twilio's ValidityPeriod for a message that may still be
// delivered for left: whole seconds, rounded up, within Twilio's bounds.
// A text held in Twilio's queue longer than that is dropped (status
// failed, error 30036) rather than delivered late.
func validityPeriod(left time.Duration) int {
	s := (left + time.Second - 1) / time.Second
	return int(min(max(s, minValidity), maxValidity))
}

// Close closes the pool's idle connections. Sends in flight finish; the
// Sender should not be used afterwards. Close is idempotent.
func (s *Sender) Close() error {
	s.closeOnce.Do(s.transport.CloseIdleConnections)
	return nil
}

// handler returns a twilio-go request handler whose requests run under ctx,
// go to APIURL through the shared pool and report the HTTP answer to ex.
//
// twilio-go builds every request with context.Background() and offers no way
// to pass one, so a per-call HTTP client is the only place to attach ctx;
// the objects are small and the transport (the pool) is shared.
func (s *Sender) handler(ctx context.Context, ex *exchange) *client.RequestHandler {
	c := &client.Client{
		Credentials: s.creds,
		HTTPClient: &http.Client{
			Transport:     &roundTripper{ctx: ctx, base: s.base, next: s.transport, ex: ex},
			CheckRedirect: noRedirect,
		},
		UserAgentExtensions: s.userAgent,
	}
	c.SetAccountSid(s.cfg.AccountSID)
	// Built directly rather than with client.NewRequestHandler, which reads
	// TWILIO_EDGE and TWILIO_REGION from the environment.
	return &client.RequestHandler{Client: c}
}

// noRedirect makes a redirect an answer, as in twilio-go's default client.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// exchange records what the HTTP layer saw of the answer, which twilio-go's
// errors do not carry.
type exchange struct {
	status     int
	retryAfter string
}

// roundTripper sends one call's requests: under the call's context, to the
// configured base URL, through the shared transport.
type roundTripper struct {
	ctx  context.Context
	base *url.URL
	next http.RoundTripper
	ex   *exchange
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	// A RoundTripper must not modify its request: a shallow copy with its
	// own URL (the header is only read).
	r := req.WithContext(rt.ctx)
	if rt.base != nil {
		u := *req.URL
		u.Scheme = rt.base.Scheme
		u.Host = rt.base.Host
		u.Path = rt.base.Path + u.Path
		u.RawPath = ""
		r.URL, r.Host = &u, ""
	}
	resp, err := rt.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	rt.ex.status = resp.StatusCode
	rt.ex.retryAfter = resp.Header.Get("Retry-After")
	return resp, nil
}

// APIError is an error answer of the Twilio REST API.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is Twilio's error code (https://www.twilio.com/docs/api/errors),
	// 0 when the answer was not Twilio's JSON error.
	Code     int
	Message  string
	MoreInfo string
	// RetryAfter is the delay the Retry-After header asked for, if any.
	RetryAfter time.Duration
	// Err is twilio-go's error.
	Err error
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "twilio: HTTP %d", e.Status)
	if e.Code != 0 {
		fmt.Fprintf(&b, ", error %d", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *APIError) Unwrap() error { return e.Err }

// Twilio error codes with a meaning for the retry policy.
const (
	codeInvalidNumber = 21211
	codeNotMobile     = 21614
	codeOptedOut      = 21610
	codeTooMany       = 20429
)

// classify turns twilio-go's error for one call into a typed error.
func classify(ctx context.Context, ex *exchange, err error) error {
	var tre *client.TwilioRestError
	if errors.As(err, &tre) {
		status := ex.status
		if status == 0 {
			status = tre.Status // refused by twilio-go before sending
		}
		return typed(&APIError{
			Status: status, Code: tre.Code, Message: tre.Message, MoreInfo: tre.MoreInfo,
			RetryAfter: parseRetryAfter(ex.retryAfter, time.Now()), Err: err,
		})
	}
	if cerr := ctx.Err(); cerr != nil {
		if !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return &deliver.TransientError{Err: fmt.Errorf("sms: request to Twilio: %w", err)}
	}
	if ex.status >= 300 {
		// An answer twilio-go could not decode, such as a load balancer's
		// HTML error page.
		return typed(&APIError{
			Status: ex.status, Message: http.StatusText(ex.status),
			RetryAfter: parseRetryAfter(ex.retryAfter, time.Now()), Err: err,
		})
	}
	if ex.status != 0 {
		return &deliver.TransientError{Err: fmt.Errorf("sms: reading Twilio's answer (HTTP %d): %w", ex.status, err)}
	}
	return &deliver.TransientError{Err: fmt.Errorf("sms: request to Twilio: %w", err)}
}

// accountFaults are the Twilio codes that say the account or its sender
// cannot send, whatever the message (see the package documentation).
var accountFaults = map[int]bool{
	10001: true, // account is not active
	20003: true, // authentication failed
	20005: true, // account not active
	21212: true, // invalid From number
	21408: true, // permission to send to the region not enabled
	21606: true, // From is not a valid, SMS-capable number of the account
}

func typed(e *APIError) error {
	code := ""
	if e.Code != 0 {
		code = strconv.Itoa(e.Code)
	}
	switch {
	case e.Code == codeOptedOut:
		return &deliver.PermanentError{Code: code, OptOut: true, Err: e}
	case e.Code == codeInvalidNumber, e.Code == codeNotMobile:
		return &deliver.PermanentError{Code: code, Err: e}
	case e.Status == http.StatusTooManyRequests, e.Code == codeTooMany:
		return &deliver.TransientError{Code: code, RetryAfter: e.RetryAfter, Err: e}
	case e.Status == http.StatusUnauthorized || accountFaults[e.Code]:
		return &deliver.ChannelFault{Code: code, Err: e}
	case e.Status >= 500:
		return &deliver.TransientError{Code: code, RetryAfter: e.RetryAfter, Err: e}
	case e.Status >= 400:
		return &deliver.PermanentError{Code: code, Err: e}
	default:
		return &deliver.TransientError{Code: code, RetryAfter: e.RetryAfter, Err: e}
	}
}

// parseRetryAfter reads a Retry-After header, delta-seconds or an HTTP date,
// as a delay from now; 0 when absent, malformed or in the past, and at most
// maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter // only digits: too large for uint64
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
