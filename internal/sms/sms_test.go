package sms

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/testkit/twiliotest"
)

// Test numbers: valid UK and US mobiles (not Ofcom's drama range, which
// libphonenumber rejects).
const (
	testTo   = "+447400123456"
	testFrom = "+12015550123"
	testCB   = "https://crier.example.com/webhooks/twilio/status?d=42"
)

type bundle struct {
	srv    *twiliotest.Server
	sender *Sender
	cfg    Config
}

// setup starts a Twilio stand-in and a Sender pointed at it, unpaced unless
// mod says otherwise.
func setup(t testing.TB, mod func(*Config)) bundle {
	t.Helper()
	srv := twiliotest.New(t, twiliotest.ExampleAccountSID, twiliotest.ExampleAuthToken)
	cfg := Config{
		AccountSID: twiliotest.ExampleAccountSID,
		AuthToken:  twiliotest.ExampleAuthToken,
		From:       testFrom,
		APIURL:     srv.URL(),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return bundle{srv: srv, sender: s, cfg: cfg}
}

func message(to string) deliver.Message {
	return deliver.Message{
		DeliveryID:     42,
		Channel:        deliver.ChannelSMS,
		To:             to,
		Text:           "eMar: Atlas Sync degraded on Sync Pod A. Switch to Sync Pod B. Reply STOP to opt out.",
		StatusCallback: testCB,
	}
}

func TestSendReachesTwilio(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	sid, err := b.sender.Send(t.Context(), message(testTo))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(sid) != 34 || !strings.HasPrefix(sid, "SM") {
		t.Errorf("SID %q is not SM + 32 hex digits", sid)
	}
	msgs := b.srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server received %d messages, want 1", len(msgs))
	}
	got := msgs[0]
	want := message(testTo)
	checks := []struct{ name, got, want string }{
		{"SID", got.SID, sid},
		{"To", got.To, testTo},
		{"From", got.From, testFrom},
		{"Body", got.Body, want.Text},
		{"StatusCallback", got.StatusCallback, testCB},
		{"MessagingServiceSid", got.MessagingServiceSID, ""},
		{"Basic auth user", got.Username, twiliotest.ExampleAccountSID},
		{"AccountSid", got.AccountSID, twiliotest.ExampleAccountSID},
		{"Status", got.Status, "queued"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if !strings.Contains(got.UserAgent, "twilio-go/") || !strings.Contains(got.UserAgent, "crier") {
		t.Errorf("User-Agent %q should name twilio-go and crier", got.UserAgent)
	}
	for k := range got.Form {
		switch k {
		case "To", "From", "Body", "StatusCallback":
		default:
			t.Errorf("unexpected form field %s=%q", k, got.Form[k])
		}
	}
}

// TestSendSetsValidityPeriod: a text carries the delivery's remaining
// maximum age as ValidityPeriod, in whole seconds within Twilio's bounds
// (1 to 36,000), so one Twilio holds in its queue is dropped rather than
// delivered late; a message without an expiry carries none.
func TestSendSetsValidityPeriod(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for i, c := range []struct {
		left time.Duration
		want string
	}{
		{50 * time.Minute, "3000"},
		{0, ""},
		{-time.Minute, "1"},
		{30 * time.Hour, "36000"},
	} {
		m := message(testTo)
		if c.left != 0 {
			// Half a second over: rounding up, whatever the request took.
			m.Expires = time.Now().Add(c.left - 500*time.Millisecond)
		}
		if _, err := b.sender.Send(t.Context(), m); err != nil {
			t.Fatalf("left %s: %v", c.left, err)
		}
		got := b.srv.Messages()[i]
		if got.ValidityPeriod != c.want {
			t.Errorf("%s left: ValidityPeriod %q, want %q", c.left, got.ValidityPeriod, c.want)
		}
	}
}

func TestSendWithMessagingService(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.From = ""
		c.MessagingServiceSID = twiliotest.ExampleMessagingServiceSID
	})
	m := message(testTo)
	m.StatusCallback = ""
	if _, err := b.sender.Send(t.Context(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := b.srv.Messages()[0]
	if got.MessagingServiceSID != twiliotest.ExampleMessagingServiceSID || got.From != "" {
		t.Errorf("MessagingServiceSid = %q, From = %q; want the service and no From", got.MessagingServiceSID, got.From)
	}
	if _, ok := got.Form["StatusCallback"]; ok {
		t.Errorf("StatusCallback sent although the message has none")
	}
	if got.Status != "accepted" {
		t.Errorf("status %q, want accepted", got.Status)
	}
}

func TestSendAlphanumericSender(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.From = "Crier" })
	if _, err := b.sender.Send(t.Context(), message(testTo)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := b.srv.Messages()[0].From; got != "Crier" {
		t.Errorf("From = %q, want Crier", got)
	}
}

// TestAPIURLWithPathPrefix reaches the stand-in through a proxy that serves
// it below /twilio: scheme and host are replaced, the path is kept below the
// prefix.
func TestAPIURLWithPathPrefix(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	target, _ := url.Parse(b.srv.URL())
	var mu sync.Mutex
	var paths []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		http.StripPrefix("/twilio", httputil.NewSingleHostReverseProxy(target)).ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	s, err := New(Config{
		AccountSID: b.cfg.AccountSID, AuthToken: b.cfg.AuthToken, From: testFrom,
		APIURL: proxy.URL + "/twilio/",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Send(t.Context(), message(testTo)); err != nil {
		t.Fatalf("Send through the proxy: %v", err)
	}
	want := "/twilio/2010-04-01/Accounts/" + twiliotest.ExampleAccountSID + "/Messages.json"
	mu.Lock()
	defer mu.Unlock()
	if len(paths) != 1 || paths[0] != want {
		t.Errorf("proxy saw %q, want [%q]", paths, want)
	}
}

type recordingTransport struct{ req *http.Request }

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.req = r
	return &http.Response{StatusCode: http.StatusTeapot, Header: http.Header{"Retry-After": {"7"}}, Body: http.NoBody, Request: r}, nil
}

func TestRoundTripperRewritesURL(t *testing.T) {
	t.Parallel()
	const twilioURL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?x=1"
	tests := []struct{ apiURL, want string }{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/2010-04-01/Accounts/AC1/Messages.json?x=1"},
		{"https://twilio.internal/proxy/", "https://twilio.internal/proxy/2010-04-01/Accounts/AC1/Messages.json?x=1"},
		{DefaultAPIURL, twilioURL},
	}
	for _, tt := range tests {
		base, err := parseAPIURL(tt.apiURL)
		if err != nil {
			t.Fatal(err)
		}
		if base.String() == DefaultAPIURL {
			base = nil
		}
		type key struct{}
		ctx := context.WithValue(t.Context(), key{}, "call")
		next := &recordingTransport{}
		var ex exchange
		rt := &roundTripper{ctx: ctx, base: base, next: next, ex: &ex}
		req, _ := http.NewRequest(http.MethodPost, twilioURL, nil)
		if _, err := rt.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if got := next.req.URL.String(); got != tt.want {
			t.Errorf("APIURL %s: request went to %s, want %s", tt.apiURL, got, tt.want)
		}
		if base != nil && next.req.Host != "" {
			t.Errorf("APIURL %s: Host header %q kept", tt.apiURL, next.req.Host)
		}
		if next.req.Context().Value(key{}) != "call" {
			t.Errorf("the request does not run under the call's context")
		}
		if req.URL.String() != twilioURL || req.Host != "api.twilio.com" {
			t.Errorf("the original request was modified: %s, Host %q", req.URL, req.Host)
		}
		if ex.status != http.StatusTeapot || ex.retryAfter != "7" {
			t.Errorf("exchange = %+v, want status 418 and Retry-After 7", ex)
		}
	}
}

func TestSendErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		fault      *twiliotest.Fault
		permanent  bool
		code       string
		optOut     bool
		status     int
		retryAfter time.Duration
	}{
		{name: "invalid number", fault: twiliotest.InvalidNumber(), permanent: true, code: "21211", status: 400},
		{name: "not mobile", fault: twiliotest.NotMobile(), permanent: true, code: "21614", status: 400},
		{name: "opted out", fault: twiliotest.OptedOut(), permanent: true, code: "21610", optOut: true, status: 400},
		{name: "other 4xx", fault: &twiliotest.Fault{Status: 400, Code: 21620, Message: "Invalid media URL(s)"}, permanent: true, code: "21620", status: 400},
		{name: "403", fault: &twiliotest.Fault{Status: 403, Code: 20008, Message: "Resource not accessible with Test Account Credentials"}, permanent: true, code: "20008", status: 403},
		{name: "429 with Retry-After", fault: twiliotest.RateLimited(2 * time.Second), code: "20429", status: 429, retryAfter: 2 * time.Second},
		{name: "20429 without Retry-After", fault: twiliotest.RateLimited(0), code: "20429", status: 429},
		{name: "429 without a Twilio body", fault: &twiliotest.Fault{Status: 429, RetryAfter: "3", Raw: "slow down"}, status: 429, retryAfter: 3 * time.Second},
		{name: "500", fault: twiliotest.ServerError(), code: "20500", status: 500},
		{name: "503 with Retry-After", fault: &twiliotest.Fault{Status: 503, Code: 20503, Message: "Service Unavailable", RetryAfter: "5"}, code: "20503", status: 503, retryAfter: 5 * time.Second},
		{name: "503 HTML page", fault: twiliotest.Unavailable(), status: 503},
		{name: "400 HTML page", fault: &twiliotest.Fault{Status: 400, Raw: "bad request"}, permanent: true, status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			b.srv.SetHook(twiliotest.Always(tt.fault))

			sid, err := b.sender.Send(t.Context(), message(testTo))
			if err == nil {
				t.Fatalf("Send succeeded with %s", sid)
			}
			checkTyped(t, err, tt.permanent, tt.code, tt.optOut, tt.retryAfter)
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("%v does not wrap an *APIError", err)
			}
			if apiErr.Status != tt.status {
				t.Errorf("APIError.Status = %d, want %d", apiErr.Status, tt.status)
			}
			if tt.fault.Code != 0 {
				if !strings.Contains(err.Error(), tt.code) || !strings.Contains(err.Error(), tt.fault.Message) {
					t.Errorf("error text %q should record Twilio's code and message", err)
				}
			}
		})
	}
}

// checkTyped checks err's type and fields for the retry policy.
func checkTyped(t *testing.T, err error, permanent bool, code string, optOut bool, retryAfter time.Duration) {
	t.Helper()
	var p *deliver.PermanentError
	var tr *deliver.TransientError
	switch {
	case permanent && errors.As(err, &p):
		if p.Code != code || p.OptOut != optOut {
			t.Errorf("PermanentError{Code: %q, OptOut: %v}, want {%q, %v}: %v", p.Code, p.OptOut, code, optOut, err)
		}
	case !permanent && errors.As(err, &tr):
		if tr.Code != code || tr.RetryAfter != retryAfter {
			t.Errorf("TransientError{Code: %q, RetryAfter: %v}, want {%q, %v}: %v", tr.Code, tr.RetryAfter, code, retryAfter, err)
		}
	default:
		t.Errorf("error %T %v: want permanent=%v", err, err, permanent)
	}
	if deliver.IsPermanent(err) != permanent {
		t.Errorf("deliver.IsPermanent(%v) = %v", err, !permanent)
	}
}

func TestSendRecoversAfterFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.SetHook(twiliotest.FirstN(2, twiliotest.RateLimited(time.Second)))
	for i := range 2 {
		if _, err := b.sender.Send(t.Context(), message(testTo)); deliver.IsPermanent(err) || err == nil {
			t.Fatalf("attempt %d: %v, want a transient error", i+1, err)
		}
	}
	if _, err := b.sender.Send(t.Context(), message(testTo)); err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	if got := b.srv.Requests(); got != 3 {
		t.Errorf("server saw %d requests, want 3", got)
	}
}

func TestSendWrongCredentials(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.AuthToken = "0000000000000000000000000000dead" })
	_, err := b.sender.Send(t.Context(), message(testTo))
	// Credentials are the account's problem, not the message's.
	checkChannelFault(t, err, "20003")
}

// TestAccountFaultsAreChannelFaults: answers that say the account or its
// sender cannot send, whatever the message, pause the channel instead of
// failing or retrying the delivery.
func TestAccountFaultsAreChannelFaults(t *testing.T) {
	t.Parallel()
	for _, f := range []twiliotest.Fault{
		{Status: 400, Code: 21606, Message: "The From phone number is not a valid, SMS-capable inbound phone number or short code for your account."},
		{Status: 400, Code: 21212, Message: "The 'From' number is not a valid phone number, shortcode, or alphanumeric sender ID."},
		{Status: 400, Code: 21408, Message: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number."},
		{Status: 401, Code: 20005, Message: "Account not active"},
		{Status: 403, Code: 10001, Message: "Account is not active"},
	} {
		b := setup(t, nil)
		b.srv.SetHook(twiliotest.Always(&f))
		_, err := b.sender.Send(t.Context(), message(testTo))
		checkChannelFault(t, err, strconv.Itoa(f.Code))
	}
}

func checkChannelFault(t *testing.T, err error, code string) {
	t.Helper()
	var f *deliver.ChannelFault
	var tr *deliver.TransientError
	if !errors.As(err, &f) || f.Code != code || deliver.IsPermanent(err) || errors.As(err, &tr) {
		t.Errorf("error %T %v: want a *deliver.ChannelFault with code %s, neither permanent nor transient", err, err, code)
	}
}

func TestSendServerDown(t *testing.T) {
	t.Parallel()
	for _, d := range []twiliotest.Down{twiliotest.Down503, twiliotest.DownHangUp} {
		b := setup(t, nil)
		b.srv.SetDown(d)
		_, err := b.sender.Send(t.Context(), message(testTo))
		checkTyped(t, err, false, "", false, 0)
		if b.srv.Accepted() != 0 {
			t.Errorf("down mode %d accepted a message", d)
		}
		b.srv.SetDown(twiliotest.Up)
		if _, err := b.sender.Send(t.Context(), message(testTo)); err != nil {
			t.Errorf("back up after down mode %d: %v", d, err)
		}
	}
}

func TestSendConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	b := setup(t, func(c *Config) { c.APIURL = "http://" + addr })
	_, err = b.sender.Send(t.Context(), message(testTo))
	checkTyped(t, err, false, "", false, 0)
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("%v does not wrap the network error", err)
	}
}

func TestSendCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.srv.SetLatency(time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := b.sender.Send(ctx, message(testTo))
		done <- err
	}()
	waitFor(t, func() bool { return b.srv.Requests() == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not wrap context.Canceled", err)
		}
		checkTyped(t, err, false, "", false, 0)
	case <-time.After(30 * time.Second):
		t.Fatal("Send did not return after its context was cancelled")
	}
}

func TestSendRequestTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.RequestTimeout = 50 * time.Millisecond })
	b.srv.SetLatency(time.Minute)
	_, err := b.sender.Send(t.Context(), message(testTo))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	checkTyped(t, err, false, "", false, 0)
}

func TestSendRefusesBadMessages(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for name, m := range map[string]deliver.Message{
		"no recipient":   {Text: "hi"},
		"not E.164":      {To: "07400 123456", Text: "hi"},
		"email address":  {To: "alice@example.com", Text: "hi"},
		"no text":        {To: testTo},
		"whitespace To":  {To: " +447400123456", Text: "hi"},
		"letters in To":  {To: "+44740012345x", Text: "hi"},
		"just a plus To": {To: "+", Text: "hi"},
	} {
		_, err := b.sender.Send(t.Context(), m)
		if !deliver.IsPermanent(err) {
			t.Errorf("%s: %v, want a permanent error", name, err)
		}
		if strings.Contains(err.Error(), "7400123") {
			t.Errorf("%s: error %q shows the number", name, err)
		}
	}
	if n := b.srv.Requests(); n != 0 {
		t.Errorf("%d bad messages reached the server", n)
	}
}

func TestSendConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.Concurrency = 16 })
	const goroutines, each = 64, 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	sids := map[string]bool{}
	errs := make(chan error, goroutines*each)
	for range goroutines {
		wg.Go(func() {
			for range each {
				sid, err := b.sender.Send(t.Context(), message(testTo))
				if err != nil {
					errs <- err
					continue
				}
				mu.Lock()
				sids[sid] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	if len(sids) != goroutines*each || b.srv.Accepted() != goroutines*each {
		t.Errorf("%d distinct SIDs, %d accepted; want %d", len(sids), b.srv.Accepted(), goroutines*each)
	}
	if n := b.srv.Connections(); n > b.cfg.Concurrency {
		t.Errorf("%d connections, more than Concurrency (%d)", n, b.cfg.Concurrency)
	}
}

// TestSendReusesConnections: sequential sends, answered with success or
// with Twilio errors, share one pooled connection.
func TestSendReusesConnections(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for i := range 40 {
		if i == 20 {
			b.srv.SetHook(twiliotest.Always(twiliotest.InvalidNumber()))
		}
		_, _ = b.sender.Send(t.Context(), message(testTo))
	}
	if n := b.srv.Connections(); n > 2 {
		t.Errorf("40 sequential sends opened %d connections", n)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	if _, err := b.sender.Send(t.Context(), message(testTo)); err != nil {
		t.Fatal(err)
	}
	if err := b.sender.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.sender.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 11, 10, 13, 35, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"2", 2 * time.Second},
		{" 30 ", 30 * time.Second},
		{"0", 0},
		{"-1", 0},
		{"1.5", 0},
		{"soon", 0},
		{"99999999999999999999", maxRetryAfter},
		{"86400", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met before the deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSendUnreadableAnswer covers a 201 that Send cannot use: not JSON, or
// JSON without a SID. Twilio may have accepted the text, so the error is
// transient (at least once), and it says what was wrong.
func TestSendUnreadableAnswer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, raw, want string }{
		{"not JSON", "<html>created</html>", "reading Twilio's answer (HTTP 201)"},
		{"no SID", `{"status":"queued"}`, "HTTP 201 without a message SID"},
		{"SID not a string", `{"sid":42}`, "reading Twilio's answer (HTTP 201)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			b.srv.SetHook(twiliotest.Always(&twiliotest.Fault{Status: http.StatusCreated, Raw: tt.raw}))
			sid, err := b.sender.Send(t.Context(), message(testTo))
			if err == nil {
				t.Fatalf("Send succeeded with %q", sid)
			}
			checkTyped(t, err, false, "", false, 0)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}
