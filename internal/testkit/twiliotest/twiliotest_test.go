package twiliotest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

const (
	to   = "+447400123456"
	from = "+12015550123"
)

func post(t *testing.T, s *Server, path string, form url.Values, auth bool) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth {
		req.SetBasicAuth(s.AccountSID(), s.AuthToken())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func messagesPathFor(sid string) string { return "/2010-04-01/Accounts/" + sid + "/Messages.json" }

func validForm() url.Values {
	return url.Values{"To": {to}, "From": {from}, "Body": {"Atlas Sync degraded"}, "StatusCallback": {"https://crier.example.com/cb"}}
}

func TestCreateMessage(t *testing.T) {
	t.Parallel()
	s := New(t, ExampleAccountSID, ExampleAuthToken)
	resp, body := post(t, s, messagesPathFor(ExampleAccountSID), validForm(), true)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	// The answer decodes with twilio-go's own model.
	var m openapi.ApiV2010Message
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if m.Sid == nil || !validSID("SM", *m.Sid) {
		t.Errorf("sid %v", m.Sid)
	}
	checks := map[string][2]string{
		"status":       {deref(m.Status), "queued"},
		"to":           {deref(m.To), to},
		"from":         {deref(m.From), from},
		"body":         {deref(m.Body), "Atlas Sync degraded"},
		"num_segments": {deref(m.NumSegments), "1"},
		"account_sid":  {deref(m.AccountSid), ExampleAccountSID},
		"direction":    {deref(m.Direction), "outbound-api"},
		"api_version":  {deref(m.ApiVersion), "2010-04-01"},
		"uri":          {deref(m.Uri), "/2010-04-01/Accounts/" + ExampleAccountSID + "/Messages/" + deref(m.Sid) + ".json"},
	}
	for k, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", k, c[0], c[1])
		}
	}
	if _, err := time.Parse(time.RFC1123Z, deref(m.DateCreated)); err != nil {
		t.Errorf("date_created %q is not RFC 2822: %v", deref(m.DateCreated), err)
	}
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	for _, k := range []string{"date_sent", "error_code", "error_message", "price"} {
		if v, ok := raw[k]; !ok || v != nil {
			t.Errorf("%s = %v, want null", k, v)
		}
	}

	msgs := s.Messages()
	if len(msgs) != 1 || msgs[0].SID != *m.Sid || msgs[0].StatusCallback != "https://crier.example.com/cb" {
		t.Fatalf("recorded %+v", msgs)
	}
	msgs[0].Form.Set("To", "changed")
	if s.Messages()[0].Form.Get("To") != to {
		t.Error("Messages does not return a copy")
	}
	if s.Requests() != 1 || s.Accepted() != 1 {
		t.Errorf("Requests %d, Accepted %d; want 1, 1", s.Requests(), s.Accepted())
	}
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

type errorJSON struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func TestErrors(t *testing.T) {
	t.Parallel()
	s := New(t, ExampleAccountSID, ExampleAuthToken)
	with := func(k, v string) url.Values {
		f := validForm()
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	tests := []struct {
		name   string
		path   string
		form   url.Values
		auth   bool
		status int
		code   int
	}{
		{"no credentials", messagesPathFor(ExampleAccountSID), validForm(), false, 401, 20003},
		{"other account", messagesPathFor("AC" + strings.Repeat("0", 32)), validForm(), true, 404, 20404},
		{"unknown path", "/2010-04-01/Accounts/" + ExampleAccountSID + "/Calls.json", validForm(), true, 404, 20404},
		{"no To", messagesPathFor(ExampleAccountSID), with("To", ""), true, 400, 21604},
		{"no From", messagesPathFor(ExampleAccountSID), with("From", ""), true, 400, 21603},
		{"no Body", messagesPathFor(ExampleAccountSID), with("Body", ""), true, 400, 21602},
		{"To not E.164", messagesPathFor(ExampleAccountSID), with("To", "07400123456"), true, 400, 21211},
		{"Body too long", messagesPathFor(ExampleAccountSID), with("Body", strings.Repeat("a", 1601)), true, 400, 21617},
		{"bad StatusCallback", messagesPathFor(ExampleAccountSID), with("StatusCallback", "ftp://x"), true, 400, 21609},
		{"bad service", messagesPathFor(ExampleAccountSID), with("MessagingServiceSid", "MGxyz"), true, 400, 21701},
		{"ValidityPeriod 0", messagesPathFor(ExampleAccountSID), with("ValidityPeriod", "0"), true, 400, 21624},
		{"ValidityPeriod over 10 h", messagesPathFor(ExampleAccountSID), with("ValidityPeriod", "36001"), true, 400, 21624},
		{"ValidityPeriod not whole", messagesPathFor(ExampleAccountSID), with("ValidityPeriod", "1.5"), true, 400, 21624},
	}
	for _, tt := range tests {
		resp, body := post(t, s, tt.path, tt.form, tt.auth)
		var e errorJSON
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("%s: body %q: %v", tt.name, body, err)
			continue
		}
		if resp.StatusCode != tt.status || e.Status != tt.status || e.Code != tt.code || e.Message == "" ||
			!strings.HasSuffix(e.MoreInfo, "/errors/"+itoa(tt.code)) {
			t.Errorf("%s: HTTP %d %+v, want %d and code %d", tt.name, resp.StatusCode, e, tt.status, tt.code)
		}
		if tt.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate header", tt.name)
		}
	}
	if s.Accepted() != 0 || len(s.Messages()) != 0 {
		t.Errorf("refused requests were recorded")
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestHooksAndFaults(t *testing.T) {
	t.Parallel()
	s := New(t, ExampleAccountSID, ExampleAuthToken)
	path := messagesPathFor(ExampleAccountSID)

	s.SetHook(FirstN(1, RateLimited(1500*time.Millisecond)))
	resp, body := post(t, s, path, validForm(), true)
	var e errorJSON
	_ = json.Unmarshal(body, &e)
	if resp.StatusCode != 429 || e.Code != 20429 || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("rate limited: HTTP %d, %+v, Retry-After %q", resp.StatusCode, e, resp.Header.Get("Retry-After"))
	}
	if resp, _ := post(t, s, path, validForm(), true); resp.StatusCode != 201 {
		t.Errorf("second request: HTTP %d, want 201", resp.StatusCode)
	}

	s.SetHook(ForTo("+447400999999", OptedOut()))
	if resp, _ := post(t, s, path, validForm(), true); resp.StatusCode != 201 {
		t.Errorf("other number: HTTP %d", resp.StatusCode)
	}
	f := validForm()
	f.Set("To", "+447400999999")
	resp, body = post(t, s, path, f, true)
	_ = json.Unmarshal(body, &e)
	if resp.StatusCode != 400 || e.Code != 21610 {
		t.Errorf("opted out: HTTP %d %+v", resp.StatusCode, e)
	}

	seen := make(chan int, 1)
	s.SetHook(func(_ string, n int) *Fault { seen <- n; return nil })
	post(t, s, path, validForm(), true)
	if n := <-seen; n != 5 {
		t.Errorf("hook saw request number %d, want 5", n)
	}
	s.SetHook(nil)

	s.SetHook(Always(Unavailable()))
	resp, body = post(t, s, path, validForm(), true)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "<html>") {
		t.Errorf("unavailable: HTTP %d %q", resp.StatusCode, body)
	}
}

func TestDown(t *testing.T) {
	t.Parallel()
	s := New(t, ExampleAccountSID, ExampleAuthToken)
	path := messagesPathFor(ExampleAccountSID)

	s.SetDown(Down503)
	if resp, _ := post(t, s, path, validForm(), false); resp.StatusCode != 503 {
		t.Errorf("Down503 answered %d", resp.StatusCode)
	}
	s.SetDown(DownHangUp)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+path, strings.NewReader(validForm().Encode()))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("DownHangUp answered %d", resp.StatusCode)
	}
	s.SetDown(Up)
	if resp, _ := post(t, s, path, validForm(), true); resp.StatusCode != 201 {
		t.Errorf("back up: %d", resp.StatusCode)
	}
}

func TestLatencyAndDiscard(t *testing.T) {
	t.Parallel()
	s := New(t, ExampleAccountSID, ExampleAuthToken)
	s.SetLatency(50 * time.Millisecond)
	s.SetDiscard(true)
	start := time.Now()
	if resp, _ := post(t, s, messagesPathFor(ExampleAccountSID), validForm(), true); resp.StatusCode != 201 {
		t.Fatalf("HTTP %d", resp.StatusCode)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("answered after %v, before the latency", d)
	}
	if s.Accepted() != 1 || len(s.Messages()) != 0 {
		t.Errorf("discard: Accepted %d, %d recorded", s.Accepted(), len(s.Messages()))
	}
}

func TestSegments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body string
		want int
	}{
		{"", 0},
		{"hello", 1},
		{strings.Repeat("a", 160), 1},
		{strings.Repeat("a", 161), 2},
		{strings.Repeat("a", 306), 2},
		{strings.Repeat("a", 307), 3},
		{strings.Repeat("€", 80), 1},  // extension: two septets each
		{strings.Repeat("€", 81), 2},  // 162 septets
		{strings.Repeat("é", 160), 1}, // é is GSM-7
		{strings.Repeat("ł", 70), 1},  // ł is not: UCS-2
		{strings.Repeat("ł", 71), 2},
		{"Sync Pod A ✅", 1},
		{strings.Repeat("😀", 35), 1}, // surrogate pairs: 70 units
		{strings.Repeat("😀", 36), 2},
	}
	for _, tt := range tests {
		if got := Segments(tt.body); got != tt.want {
			t.Errorf("Segments(%.20q…, %d chars) = %d, want %d", tt.body, len([]rune(tt.body)), got, tt.want)
		}
	}
}

func TestStatusCallback(t *testing.T) {
	t.Parallel()
	type received struct {
		form  url.Values
		valid bool
	}
	got := make(chan received, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		rv := client.NewRequestValidator(ExampleAuthToken)
		// Twilio signs the URL as configured, including the query.
		fullURL := "http://" + r.Host + r.URL.RequestURI()
		got <- received{form: form, valid: rv.ValidateBody(fullURL, body, r.Header.Get("X-Twilio-Signature"))}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	s := New(t, ExampleAccountSID, ExampleAuthToken)
	f := validForm()
	f.Set("StatusCallback", hook.URL+"/webhooks/twilio/status?d=42")
	post(t, s, messagesPathFor(ExampleAccountSID), f, true)
	sid := s.Messages()[0].SID

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := s.ReportStatus(ctx, sid, "undelivered", 30003)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("callback answered %d", resp.StatusCode)
	}
	r := <-got
	if !r.valid {
		t.Error("twilio-go's RequestValidator rejects the callback's signature")
	}
	want := map[string]string{
		"MessageSid": sid, "SmsSid": sid, "MessageStatus": "undelivered", "SmsStatus": "undelivered",
		"ErrorCode": "30003", "To": to, "From": from, "AccountSid": ExampleAccountSID, "ApiVersion": "2010-04-01",
	}
	for k, v := range want {
		if r.form.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, r.form.Get(k), v)
		}
	}

	if _, err := s.ReportStatus(ctx, "SM"+strings.Repeat("0", 32), "delivered", 0); err == nil {
		t.Error("ReportStatus for an unknown message succeeded")
	}
	if form := (StatusUpdate{MessageSid: sid, MessageStatus: "delivered"}).Form(); form.Has("ErrorCode") {
		t.Error("ErrorCode sent for a delivered message")
	}
}
