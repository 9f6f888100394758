// Package twiliotest provides an HTTP server for tests that speaks the part of
// Twilio's documented REST wire format crier uses, so that the SMS sender can
// be tested over real HTTP without reaching Twilio.
//
// The server answers POST /2010-04-01/Accounts/{AccountSid}/Messages.json:
// form fields To, From or MessagingServiceSid, Body and StatusCallback, HTTP
// Basic auth with the account SID and auth token, a 201 Message resource in
// JSON on success and Twilio's JSON error body
// ({"code", "message", "more_info", "status"}) otherwise. It validates the
// request as Twilio does (missing To, From or Body; a To that is not E.164;
// a body over 1600 characters) and can be told to fail: a Hook per request,
// a Down switch, latency, and a discard mode for benchmarks.
//
// It can also play Twilio's side of status callbacks: Signature computes an
// X-Twilio-Signature, SendStatusCallback posts a signed callback, and
// Server.ReportStatus reports on a message the server accepted.
package twiliotest

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// Credentials of the right shape for tests. They are not real.
const (
	ExampleAccountSID          = "AC0123456789abcdef0123456789abcdef"
	ExampleAuthToken           = "fedcba9876543210fedcba9876543210"
	ExampleMessagingServiceSID = "MG0123456789abcdef0123456789abcdef"
)

// Twilio's limits and formats, as documented.
const (
	apiVersion    = "2010-04-01"
	maxBodyChars  = 1600
	moreInfoBase  = "https://www.twilio.com/docs/errors/"
	messagesPath  = "/" + apiVersion + "/Accounts/{AccountSid}/Messages.json"
	dateLayout    = time.RFC1123Z // RFC 2822, as Twilio writes dates
	defaultStatus = http.StatusBadRequest
)

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

// Message is a message the server accepted, as received.
type Message struct {
	SID                 string
	AccountSID          string
	To                  string
	From                string
	MessagingServiceSID string
	Body                string
	StatusCallback      string
	// ValidityPeriod is the form field as sent: whole seconds from 1 to
	// 36000, or empty.
	ValidityPeriod string
	// Status is the status answered: "queued", or "accepted" when the
	// message was sent through a Messaging Service without a From.
	Status      string
	NumSegments int
	DateCreated time.Time
	// Username is the Basic-auth user name the request carried.
	Username  string
	UserAgent string
	// Form is every form field received.
	Form url.Values
}

func (m Message) clone() Message {
	f := make(url.Values, len(m.Form))
	for k, v := range m.Form {
		f[k] = append([]string(nil), v...)
	}
	m.Form = f
	return m
}

// Fault is an error response: an HTTP status with Twilio's JSON error body,
// or a raw body when Raw is set.
type Fault struct {
	// Status is the HTTP status code; 0 means 400.
	Status int
	// Code and Message are Twilio's error code and text; MoreInfo defaults
	// to Twilio's documentation page for Code.
	Code     int
	Message  string
	MoreInfo string
	// RetryAfter, when set, is sent verbatim as the Retry-After header
	// (delta-seconds or an HTTP date).
	RetryAfter string
	// Raw, when set, replaces the JSON body (for example the HTML page a
	// load balancer serves); it is sent as text/html.
	Raw string
}

// RateLimited is Twilio's 429 Too Many Requests (error 20429) with a
// Retry-After header of retryAfter, rounded up to whole seconds (none when
// retryAfter is 0).
func RateLimited(retryAfter time.Duration) *Fault {
	f := &Fault{Status: http.StatusTooManyRequests, Code: 20429, Message: "Too Many Requests"}
	if retryAfter > 0 {
		f.RetryAfter = strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10)
	}
	return f
}

// ServerError is a 500 with Twilio's error 20500.
func ServerError() *Fault {
	return &Fault{Status: http.StatusInternalServerError, Code: 20500, Message: "Internal Server Error"}
}

// Unavailable is a 503 whose body is an HTML page rather than Twilio's JSON,
// as a load balancer in front of an unavailable API answers.
func Unavailable() *Fault {
	return &Fault{Status: http.StatusServiceUnavailable, Raw: "<html><body><h1>503 Service Unavailable</h1></body></html>\n"}
}

// InvalidNumber is error 21211: the To number is not a valid phone number.
func InvalidNumber() *Fault {
	return &Fault{Status: http.StatusBadRequest, Code: 21211, Message: "The 'To' number is not a valid phone number."}
}

// NotMobile is error 21614: the To number is not a mobile number.
func NotMobile() *Fault {
	return &Fault{Status: http.StatusBadRequest, Code: 21614, Message: "'To' number is not a valid mobile number"}
}

// OptedOut is error 21610: the recipient replied STOP to this sender.
func OptedOut() *Fault {
	return &Fault{Status: http.StatusBadRequest, Code: 21610, Message: "Attempt to send to unsubscribed recipient"}
}

// Hook decides the answer to one create-message request: nil lets the
// request succeed, a Fault makes it fail. to is the To field and n the
// 1-based number of the request among all authenticated create-message
// requests the server has received. A Hook is called from the server's
// goroutines, concurrently.
type Hook func(to string, n int) *Fault

// Always fails every request with f.
func Always(f *Fault) Hook { return func(string, int) *Fault { return f } }

// FirstN fails the first n requests with f and lets the rest succeed.
func FirstN(n int, f *Fault) Hook {
	return func(_ string, i int) *Fault {
		if i <= n {
			return f
		}
		return nil
	}
}

// ForTo fails every request to the number to with f.
func ForTo(to string, f *Fault) Hook {
	return func(got string, _ int) *Fault {
		if got == to {
			return f
		}
		return nil
	}
}

// Down says how the server behaves when it is down.
type Down int

// Down modes.
const (
	// Up: the server works.
	Up Down = iota
	// Down503: every request, authenticated or not, is answered with
	// Unavailable().
	Down503
	// DownHangUp: every request's connection is closed without an answer.
	DownHangUp
)

// Server is a Twilio REST API stand-in listening on 127.0.0.1. Its methods
// are safe for concurrent use.
type Server struct {
	srv        *httptest.Server
	accountSID string
	authToken  string

	requests atomic.Int64 // authenticated create-message requests
	accepted atomic.Int64 // messages answered with 201
	conns    atomic.Int64 // TCP connections accepted

	mu          sync.Mutex
	messages    []Message
	hook        Hook
	down        Down
	latency     time.Duration
	discard     bool
	reportFirst string
}

// New starts a server on 127.0.0.1 with a random port for the account
// accountSID, authenticating with authToken; it is closed when the test ends.
func New(t testing.TB, accountSID, authToken string) *Server {
	t.Helper()
	if accountSID == "" || authToken == "" {
		t.Fatalf("twiliotest.New: account SID and auth token are required")
	}
	s := &Server{accountSID: accountSID, authToken: authToken}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+messagesPath, s.createMessage)
	mux.HandleFunc(messagesPath, func(w http.ResponseWriter, r *http.Request) {
		s.writeFault(w, &Fault{Status: http.StatusMethodNotAllowed, Code: 20004, Message: "Method not allowed"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeFault(w, notFound(r.URL.Path))
	})
	s.srv = httptest.NewUnstartedServer(s.outer(mux))
	s.srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the base URL of the server ("http://127.0.0.1:port"), the value for
// the sender's APIURL.
func (s *Server) URL() string { return s.srv.URL }

// AccountSID returns the account the server serves.
func (s *Server) AccountSID() string { return s.accountSID }

// AuthToken returns the auth token the server expects and signs with.
func (s *Server) AuthToken() string { return s.authToken }

// Messages returns a copy of the messages accepted so far, in arrival order
// (none in discard mode).
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = m.clone()
	}
	return out
}

// Requests returns the number of authenticated create-message requests
// received, whatever their answer.
func (s *Server) Requests() int { return int(s.requests.Load()) }

// Accepted returns the number of messages answered with 201, including those
// not recorded in discard mode.
func (s *Server) Accepted() int { return int(s.accepted.Load()) }

// Connections returns the number of TCP connections the server has
// accepted, to check that a client reuses its connections.
func (s *Server) Connections() int { return int(s.conns.Load()) }

// SetHook installs h to decide each create-message answer; nil removes it.
func (s *Server) SetHook(h Hook) {
	s.mu.Lock()
	s.hook = h
	s.mu.Unlock()
}

// SetDown switches the server down (Down503, DownHangUp) or back Up.
func (s *Server) SetDown(d Down) {
	s.mu.Lock()
	s.down = d
	s.mu.Unlock()
}

// SetLatency delays every create-message answer by d (0 for none). The delay
// ends early when the client goes away.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// SetDiscard turns discard mode on or off: accepted messages are counted
// (Accepted) but not recorded, for benchmarks.
func (s *Server) SetDiscard(on bool) {
	s.mu.Lock()
	s.discard = on
	s.mu.Unlock()
}

// SetReportFirst makes the server post a status callback with status (such
// as "delivered") for each message it accepts before it answers the request
// that created it, as Twilio can when its answer is slow to arrive: the
// report then comes before the sender knows the SID. Empty turns it off.
func (s *Server) SetReportFirst(status string) {
	s.mu.Lock()
	s.reportFirst = status
	s.mu.Unlock()
}

type settings struct {
	hook        Hook
	down        Down
	latency     time.Duration
	discard     bool
	reportFirst string
}

func (s *Server) settings() settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return settings{hook: s.hook, down: s.down, latency: s.latency, discard: s.discard, reportFirst: s.reportFirst}
}

// outer applies the Down switch and Basic auth to every request.
func (s *Server) outer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch s.settings().down {
		case Down503:
			s.writeFault(w, Unavailable())
			return
		case DownHangUp:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // closes the connection without an answer
		}
		user, pass, ok := r.BasicAuth()
		if !ok || !equal(user, s.accountSID) || !equal(pass, s.authToken) {
			w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
			msg := "Authentication Error - invalid username"
			if !ok {
				msg = "Authentication Error - No credentials provided"
			}
			s.writeFault(w, &Fault{Status: http.StatusUnauthorized, Code: 20003, Message: msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func notFound(path string) *Fault {
	return &Fault{Status: http.StatusNotFound, Code: 20404, Message: fmt.Sprintf("The requested resource %s was not found", path)}
}

func (s *Server) createMessage(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("AccountSid") != s.accountSID {
		s.writeFault(w, notFound(r.URL.Path))
		return
	}
	n := int(s.requests.Add(1))
	set := s.settings()
	// Read the body first: only then does the server notice a client that
	// hangs up during the latency.
	formErr := r.ParseForm()
	if set.latency > 0 {
		t := time.NewTimer(set.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if formErr != nil {
		s.writeFault(w, &Fault{Code: 20001, Message: "Unable to parse the request body: " + formErr.Error()})
		return
	}
	m := Message{
		AccountSID:          s.accountSID,
		To:                  r.PostForm.Get("To"),
		From:                r.PostForm.Get("From"),
		MessagingServiceSID: r.PostForm.Get("MessagingServiceSid"),
		Body:                r.PostForm.Get("Body"),
		StatusCallback:      r.PostForm.Get("StatusCallback"),
		ValidityPeriod:      r.PostForm.Get("ValidityPeriod"),
	}
	if f := validate(m); f != nil {
		s.writeFault(w, f)
		return
	}
	if set.hook != nil {
		if f := set.hook(m.To, n); f != nil {
			s.writeFault(w, f)
			return
		}
	}

	m.SID = newSID("SM")
	m.Status = "queued"
	if m.From == "" {
		m.Status = "accepted"
	}
	m.NumSegments = Segments(m.Body)
	m.DateCreated = time.Now().UTC().Truncate(time.Second)
	m.Username, _, _ = r.BasicAuth()
	m.UserAgent = r.UserAgent()
	if !set.discard {
		m.Form = r.PostForm
		s.mu.Lock()
		s.messages = append(s.messages, m)
		s.mu.Unlock()
	}
	s.accepted.Add(1)
	if set.reportFirst != "" && m.StatusCallback != "" {
		cb := StatusUpdate{MessageSid: m.SID, MessageStatus: set.reportFirst, To: m.To, From: m.From, AccountSid: m.AccountSID}
		if resp, err := SendStatusCallback(r.Context(), m.StatusCallback, s.authToken, cb.Form()); err == nil {
			resp.Body.Close()
		}
	}
	writeJSON(w, http.StatusCreated, resource(m))
}

// validValidity reports whether v is a ValidityPeriod Twilio accepts.
func validValidity(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n >= 1 && n <= 36_000 && strconv.Itoa(n) == v
}

func validate(m Message) *Fault {
	switch {
	case m.To == "":
		return &Fault{Code: 21604, Message: "A 'To' phone number is required."}
	case m.From == "" && m.MessagingServiceSID == "":
		return &Fault{Code: 21603, Message: "A 'From' phone number is required."}
	case m.Body == "":
		return &Fault{Code: 21602, Message: "Message body is required."}
	case !e164.MatchString(m.To):
		return &Fault{Code: 21211, Message: fmt.Sprintf("The 'To' number %s is not a valid phone number.", m.To)}
	case m.ValidityPeriod != "" && !validValidity(m.ValidityPeriod):
		return &Fault{Code: 21624, Message: "Validity period can only be set to integers between 1 and 36,000 seconds (10 hours max)."}
	case utf8.RuneCountInString(m.Body) > maxBodyChars:
		return &Fault{Code: 21617, Message: "The concatenated message body exceeds the 1600 character limit."}
	case m.MessagingServiceSID != "" && !validSID("MG", m.MessagingServiceSID):
		return &Fault{Code: 21701, Message: fmt.Sprintf("The Messaging Service Sid %s is invalid.", m.MessagingServiceSID)}
	case m.StatusCallback != "" && !validCallback(m.StatusCallback):
		return &Fault{Code: 21609, Message: "Invalid StatusCallback url"}
	}
	return nil
}

func validSID(prefix, sid string) bool {
	if len(sid) != 34 || sid[:2] != prefix {
		return false
	}
	_, err := hex.DecodeString(sid[2:])
	return err == nil
}

// messageResource is Twilio's Message resource as JSON.
type messageResource struct {
	AccountSID          string            `json:"account_sid"`
	APIVersion          string            `json:"api_version"`
	Body                string            `json:"body"`
	DateCreated         string            `json:"date_created"`
	DateSent            *string           `json:"date_sent"`
	DateUpdated         string            `json:"date_updated"`
	Direction           string            `json:"direction"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	From                *string           `json:"from"`
	MessagingServiceSID *string           `json:"messaging_service_sid"`
	NumMedia            string            `json:"num_media"`
	NumSegments         string            `json:"num_segments"`
	Price               *string           `json:"price"`
	PriceUnit           string            `json:"price_unit"`
	SID                 string            `json:"sid"`
	Status              string            `json:"status"`
	SubresourceURIs     map[string]string `json:"subresource_uris"`
	To                  string            `json:"to"`
	URI                 string            `json:"uri"`
}

func resource(m Message) messageResource {
	base := "/" + apiVersion + "/Accounts/" + m.AccountSID + "/Messages/" + m.SID
	date := m.DateCreated.Format(dateLayout)
	res := messageResource{
		AccountSID:  m.AccountSID,
		APIVersion:  apiVersion,
		Body:        m.Body,
		DateCreated: date,
		DateUpdated: date,
		Direction:   "outbound-api",
		NumMedia:    "0",
		NumSegments: strconv.Itoa(m.NumSegments),
		PriceUnit:   "USD",
		SID:         m.SID,
		Status:      m.Status,
		SubresourceURIs: map[string]string{
			"media":    base + "/Media.json",
			"feedback": base + "/Feedback.json",
		},
		To:  m.To,
		URI: base + ".json",
	}
	if m.From != "" {
		res.From = &m.From
	}
	if m.MessagingServiceSID != "" {
		res.MessagingServiceSID = &m.MessagingServiceSID
		if m.From == "" {
			res.NumSegments = "0" // no sender assigned yet
		}
	}
	return res
}

type errorBody struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func (s *Server) writeFault(w http.ResponseWriter, f *Fault) {
	status := f.Status
	if status == 0 {
		status = defaultStatus
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.Raw != "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(f.Raw))
		return
	}
	more := f.MoreInfo
	if more == "" && f.Code != 0 {
		more = moreInfoBase + strconv.Itoa(f.Code)
	}
	writeJSON(w, status, errorBody{Code: f.Code, Message: f.Message, MoreInfo: more, Status: status})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Twilio-Request-Id", newSID("RQ"))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// newSID returns prefix followed by 32 random hex digits, the shape of every
// Twilio SID.
func newSID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return prefix + hex.EncodeToString(b[:])
}

// Segments returns the number of SMS segments Twilio would bill for body:
// GSM-7 bodies take 160 characters in one segment and 153 per segment when
// concatenated (characters of the GSM extension table count twice); any
// other character makes the body UCS-2, 70 and 67 UTF-16 code units.
func Segments(body string) int {
	if body == "" {
		return 0
	}
	septets, gsm := 0, true
	units := 0
	for _, r := range body {
		switch {
		case isGSMBasic(r):
			septets++
		case isGSMExtension(r):
			septets += 2
		default:
			gsm = false
		}
		if r > 0xFFFF {
			units += 2
		} else {
			units++
		}
	}
	single, multi, n := 70, 67, units
	if gsm {
		single, multi, n = 160, 153, septets
	}
	if n <= single {
		return 1
	}
	return (n + multi - 1) / multi
}

const (
	gsmBasic     = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	gsmExtension = "\f^{}\\[~]|€"
)

func isGSMBasic(r rune) bool {
	if r >= 0x20 && r < 0x7F {
		return !strings.ContainsRune("`^{}\\[]~|", r)
	}
	return strings.ContainsRune(gsmBasic, r)
}

func isGSMExtension(r rune) bool { return strings.ContainsRune(gsmExtension, r) }

func validCallback(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// ReportStatus posts a signed status callback for the message with the given
// SID, which the server accepted, to the StatusCallback URL it was sent with,
// as Twilio does when the message's status changes. errorCode 0 means none.
// The caller closes the response body.
func (s *Server) ReportStatus(ctx context.Context, sid, status string, errorCode int) (*http.Response, error) {
	s.mu.Lock()
	var m *Message
	for i := range s.messages {
		if s.messages[i].SID == sid {
			m = &s.messages[i]
			break
		}
	}
	var cb StatusUpdate
	var target string
	if m != nil {
		target = m.StatusCallback
		cb = StatusUpdate{
			MessageSid: sid, MessageStatus: status, ErrorCode: errorCode,
			To: m.To, From: m.From, AccountSid: m.AccountSID, MessagingServiceSid: m.MessagingServiceSID,
		}
	}
	s.mu.Unlock()
	if m == nil {
		return nil, fmt.Errorf("twiliotest: no message %s was accepted (or discard mode is on)", sid)
	}
	if target == "" {
		return nil, fmt.Errorf("twiliotest: message %s was sent without a StatusCallback", sid)
	}
	return SendStatusCallback(ctx, target, s.authToken, cb.Form())
}
