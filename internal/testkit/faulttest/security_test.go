package faulttest

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/testkit/smtptest"
	"github.com/crier-dev/crier/internal/testkit/twiliotest"
	"github.com/crier-dev/crier/internal/token"
)

// secWorld is the security test's crier and what it said.
type secWorld struct {
	*world
	p      *proc
	signer *token.Signer

	mu      sync.Mutex
	answers []string // every status line, header and body received
}

// request sends one request and keeps the whole answer for the final scan.
func (s *secWorld) request(method, path string, body string, hdr http.Header) (int, http.Header, string) {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.p.base()+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var all strings.Builder
	// The answer only: the request (which may carry a token on purpose)
	// is not part of what is scanned.
	fmt.Fprintf(&all, "%s\n", resp.Status)
	for k, v := range resp.Header {
		fmt.Fprintf(&all, "%s: %s\n", k, strings.Join(v, ", "))
	}
	all.Write(b)
	s.mu.Lock()
	s.answers = append(s.answers, all.String())
	s.mu.Unlock()
	return resp.StatusCode, resp.Header, string(b)
}

var noRedirect = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

var formType = http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}

func with(h http.Header, kv ...string) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}

// apiRoutes reads the /v1 routes from internal/httpapi's Register, so that a
// route added there is covered here without anyone remembering to.
func apiRoutes(t *testing.T) [][2]string {
	t.Helper()
	src, err := os.ReadFile("../../httpapi/httpapi.go")
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	for _, m := range regexp.MustCompile(`api\("([A-Z]+) (/v1/[^"]*)"`).FindAllStringSubmatch(string(src), -1) {
		out = append(out, [2]string{m[1], m[2]})
	}
	if len(out) < 13 {
		t.Fatalf("found only %d /v1 routes in internal/httpapi/httpapi.go: %v", len(out), out)
	}
	return out
}

// TestSecurity runs one crier and attacks it: every /v1 and /admin route
// refuses a missing or wrong token; the webhooks refuse bad signatures;
// manage and unsubscribe links cannot be guessed or enumerated (404 for any
// unknown token, in the same time whatever the token looks like); forms
// refuse cross-origin posts; the subscribe rate limits hold under a burst of
// 1,000 requests; and at the end no address, token or secret appears in
// anything the process wrote or answered.
func TestSecurity(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{keepMessages: true, smtpAuth: true})
	subs := w.addSubscribers(3, "emar")
	// Providers that quote the address in their refusals, as real ones do.
	w.sinks.smtp.SetRcptHook(func(rcpt string, _ int) *smtp.SMTPError {
		if strings.EqualFold(rcpt, subs[1].email) {
			return smtptest.ReplyError(550, "5.1.1 <"+rcpt+">: Recipient address rejected: User unknown")
		}
		return nil
	})
	w.sinks.twilio.SetHook(func(to string, _ int) *twiliotest.Fault {
		if to == subs[2].phone {
			return &twiliotest.Fault{Status: http.StatusBadRequest, Code: 21211, Message: "The 'To' number " + to + " is not a valid phone number."}
		}
		return nil
	})
	s := &secWorld{world: w}
	// Many wrong tokens from one address: their limit is tested in
	// TestWrongTokensAreLimitedAcrossProcesses.
	s.p = w.start("crier", map[string]string{"CRIER_LOG_LEVEL": "debug", "CRIER_LIMIT_AUTHFAIL_CLIENT": "100000/1s"})
	var err error
	if s.signer, err = token.NewSigner([]byte(tokenSecret)); err != nil {
		t.Fatal(err)
	}
	ev := newEvent("sec-0001", "inc-sec", "emar")
	ev.Title = "Distinctive title 5f0a for the dashboard"
	w.publish(ev)
	w.waitSettled(time.Minute, 6, ev.ID)

	t.Run("API routes need the token", s.apiRoutesNeedToken)
	t.Run("admin needs a session", func(t *testing.T) { s.adminNeedsSession(t, ev.Title) })
	t.Run("webhooks need Twilio's signature", s.webhooksNeedSignature)
	t.Run("links cannot be guessed", s.linksCannotBeGuessed)
	t.Run("link refusals take the same time", s.linkTiming)
	t.Run("forms refuse cross-origin posts", s.crossOrigin)
	t.Run("subscribe rate limits hold under a burst", s.subscribeBurst)
	t.Run("no address, token or secret is logged or answered", s.noSecrets)
}

func (s *secWorld) bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {"application/json"}}
}

func (s *secWorld) apiRoutesNeedToken(t *testing.T) {
	bodies := map[string]string{
		"POST /v1/events":                string(mustEncode(t, newEvent("sec-sneaky", "inc-sneaky", "emar"))),
		"PUT /v1/components/{key...}":    `{"name":"Hijacked"}`,
		"POST /v1/subscribers":           `{"email":"sneaky@attacker.example","components":["emar"],"confirmed":true}`,
		"PATCH /v1/subscribers/{id}":     `{"email":"sneaky@attacker.example"}`,
		"POST /v1/subscribers/import":    "email,phone,name,organisation,components\nsneaky@attacker.example,,,,emar\n",
		"DELETE /v1/components/{key...}": "",
	}
	auths := map[string]http.Header{
		"no header":            {},
		"wrong token":          {"Authorization": {"Bearer not-the-token"}},
		"empty bearer":         {"Authorization": {"Bearer "}},
		"token plus a byte":    {"Authorization": {"Bearer " + apiToken + "x"}},
		"token minus a byte":   {"Authorization": {"Bearer " + apiToken[:len(apiToken)-1]}},
		"token as Basic":       {"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(apiToken+":"))}},
		"token without scheme": {"Authorization": {apiToken}},
		"token in a cookie":    {"Cookie": {"crier_admin=" + apiToken}},
	}
	names := make([]string, 0, len(auths))
	for n := range auths {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, r := range apiRoutes(t) {
		method, pattern := r[0], r[1]
		path := strings.NewReplacer("{id}", "1", "{key...}", "emar").Replace(pattern)
		if strings.HasPrefix(pattern, "/v1/events/") {
			path = strings.ReplaceAll(pattern, "{id}", "sec-0001")
		}
		for _, n := range names {
			hdr := with(auths[n], "Content-Type", "application/json")
			if strings.HasSuffix(path, "/import") {
				hdr.Set("Content-Type", "text/csv")
			}
			for _, p := range []string{path, path + "?token=" + apiToken + "&access_token=" + apiToken} {
				code, h, body := s.request(method, p, bodies[method+" "+pattern], hdr)
				if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" || strings.Contains(body, "sec-0001") {
					t.Errorf("%s %s with %s: %d %q; want 401 with WWW-Authenticate and nothing else", method, p, n, code, trim(body))
				}
			}
		}
	}
	// Nothing changed, and the right token does work.
	if n := s.count(`SELECT count(*) FROM subscribers WHERE email LIKE '%attacker%'`); n != 0 {
		t.Errorf("%d subscribers created without the token", n)
	}
	if n := s.count(`SELECT count(*) FROM components WHERE name = 'Hijacked' OR key = 'emar'`); n != 1 {
		t.Errorf("component emar changed or deleted without the token")
	}
	if n := s.count(`SELECT count(*) FROM events WHERE id = 'sec-sneaky'`); n != 0 {
		t.Error("event published without the token")
	}
	if code, _, body := s.request("GET", "/v1/components", "", s.bearer(apiToken)); code != http.StatusOK {
		t.Errorf("GET /v1/components with the token: %d %s", code, trim(body))
	}
}

func (s *secWorld) adminNeedsSession(t *testing.T, title string) {
	session := func(tok string, exp time.Time) string {
		return s.signer.Make(token.PurposeAdminSession+":"+tok, 0, uint32(exp.Unix()))
	}
	for name, hdr := range map[string]http.Header{
		"nothing":               {},
		"wrong bearer":          {"Authorization": {"Bearer nope"}},
		"garbage cookie":        {"Cookie": {"crier_admin=garbage"}},
		"API token as cookie":   {"Cookie": {"crier_admin=" + apiToken}},
		"session of a stranger": {"Cookie": {"crier_admin=" + session("someone-else", time.Now().Add(time.Hour))}},
		"expired session":       {"Cookie": {"crier_admin=" + session(apiToken, time.Now().Add(-time.Minute))}},
		"session never started": {"Cookie": {"crier_admin=" + session(apiToken, time.Now().Add(time.Hour))}},
		"manage token":          {"Cookie": {"crier_admin=" + s.signer.Make(token.PurposeManage, 0, uint32(time.Now().Add(time.Hour).Unix()))}},
	} {
		code, _, body := s.request("GET", "/admin", "", hdr)
		if code != http.StatusUnauthorized || strings.Contains(body, title) || strings.Contains(body, "sec-0001") {
			t.Errorf("GET /admin with %s: %d; want 401 without the dashboard", name, code)
		}
	}
	for _, tok := range []string{"", "nope", apiToken + " x", strings.ToUpper(apiToken)} {
		code, h, _ := s.request("POST", "/admin/login", form("token", tok), formType)
		if code != http.StatusUnauthorized || h.Get("Set-Cookie") != "" {
			t.Errorf("POST /admin/login with %q: %d, Set-Cookie %q; want 401 and no cookie", tok, code, h.Get("Set-Cookie"))
		}
	}
	// Positive controls: a real sign-in and a real session.
	code, h, _ := s.request("POST", "/admin/login", form("token", apiToken), formType)
	if code != http.StatusSeeOther || !strings.Contains(h.Get("Set-Cookie"), "HttpOnly") {
		t.Errorf("sign-in with the token: %d, Set-Cookie %q", code, h.Get("Set-Cookie"))
	}
	var cookie string
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == "crier_admin" {
			cookie = c.Name + "=" + c.Value
		}
	}
	code, _, body := s.request("GET", "/admin", "", http.Header{"Cookie": {cookie}})
	if code != http.StatusOK || !strings.Contains(body, title) {
		t.Errorf("GET /admin with a valid session: %d; want the dashboard", code)
	}
}

func (s *secWorld) webhooksNeedSignature(t *testing.T) {
	inbound := s.p.base() + "/webhooks/twilio/inbound"
	status := s.p.base() + "/webhooks/twilio/status"
	stop := url.Values{"From": {s.subs[0].phone}, "To": {"+447400000001"}, "Body": {"STOP"}, "MessageSid": {"SM0123"}, "AccountSid": {twiliotest.ExampleAccountSID}}
	start := url.Values{"From": {s.subs[0].phone}, "To": {"+447400000001"}, "Body": {"START"}, "MessageSid": {"SM0123"}, "AccountSid": {twiliotest.ExampleAccountSID}}
	report := url.Values{"MessageSid": {"SMunknown"}, "MessageStatus": {"delivered"}}
	tok := twiliotest.ExampleAuthToken
	for name, c := range map[string]struct {
		target string
		form   url.Values
		sig    string
	}{
		"no signature":               {inbound, stop, ""},
		"garbage signature":          {inbound, stop, "bm90IGEgc2lnbmF0dXJl"},
		"signature of another URL":   {inbound, stop, twiliotest.Signature(tok, "https://attacker.example/webhooks/twilio/inbound", stop)},
		"signature of another form":  {inbound, stop, twiliotest.Signature(tok, inbound, start)},
		"signature with another key": {inbound, stop, twiliotest.Signature("0123456789abcdef0123456789abcdef", inbound, stop)},
		"status, no signature":       {status, report, ""},
		"status, the inbound URL's":  {status, report, twiliotest.Signature(tok, inbound, report)},
	} {
		hdr := formType.Clone()
		if c.sig != "" {
			hdr.Set("X-Twilio-Signature", c.sig)
		}
		path := strings.TrimPrefix(c.target, s.p.base())
		if code, _, body := s.request("POST", path, c.form.Encode(), hdr); code != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403", name, code, trim(body))
		}
	}
	if n := s.count(`SELECT count(*) FROM subscribers WHERE id = $1 AND sms_opted_out_at IS NOT NULL`, s.subs[0].id); n != 0 {
		t.Error("an unsigned STOP opted the subscriber out")
	}
	// Positive control: a genuine report is taken.
	hdr := with(formType, "X-Twilio-Signature", twiliotest.Signature(tok, status, report))
	if code, _, body := s.request("POST", "/webhooks/twilio/status", report.Encode(), hdr); code >= 300 {
		t.Errorf("genuine status report: %d %s", code, trim(body))
	}
}

// guesses returns tokens that must all be refused: malformed ones, ones of
// the right shape with a wrong MAC, and real tokens for the wrong purpose,
// key or subscriber.
func (s *secWorld) guesses(t *testing.T, purpose string, id int64) map[string]string {
	real := s.signer.Make(purpose, id, 0)
	raw, err := base64.RawURLEncoding.DecodeString(real)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := slices.Clone(raw)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	other, _ := token.NewSigner([]byte("another-key-another-key-another-key!!"))
	otherPurpose := token.PurposeManage
	if purpose == token.PurposeManage {
		otherPurpose = token.PurposeUnsubscribeEmail
	}
	return map[string]string{
		"one character":         "x",
		"right length of A":     strings.Repeat("A", len(real)),
		"right length, not b64": strings.Repeat("*", len(real)),
		"MAC changed":           flip(len(raw) - 1),
		"subscriber id changed": flip(7),
		"next subscriber":       s.signer.Make(purpose, id+1, 0)[:12] + real[12:],
		"no such subscriber":    s.signer.Make(purpose, 987654321, 0),
		"another key":           other.Make(purpose, id, 0),
		"another purpose":       s.signer.Make(otherPurpose, id, 0),
		"admin session":         s.signer.Make(token.PurposeAdminSession+":"+apiToken, 0, 0),
		"truncated":             real[:len(real)-1],
		"extended":              real + "A",
		"padded":                real + "==",
		"standard base64":       base64.StdEncoding.EncodeToString(raw),
		"10 kB":                 strings.Repeat("A", 10000),
		"path traversal":        "..%2F..%2Fadmin",
	}
}

func (s *secWorld) linksCannotBeGuessed(t *testing.T) {
	victim := s.subs[0]
	for _, c := range []struct{ prefix, purpose string }{
		{"/manage/", token.PurposeManage},
		{"/unsubscribe/", token.PurposeUnsubscribeEmail},
	} {
		real := s.signer.Make(c.purpose, victim.id, 0)
		if code, _, body := s.request("GET", c.prefix+real, "", nil); code != http.StatusOK {
			t.Fatalf("GET %s<real token>: %d %s; the refusals below would prove nothing", c.prefix, code, trim(body))
		}
		for name, tok := range s.guesses(t, c.purpose, victim.id) {
			for _, method := range []string{"GET", "POST"} {
				body := form("action", "unsubscribe", "List-Unsubscribe", "One-Click", "components", "capa")
				code, _, page := s.request(method, c.prefix+tok, body, formType)
				if code != http.StatusNotFound {
					t.Errorf("%s %s<%s>: %d, want 404", method, c.prefix, name, code)
				}
				if strings.Contains(page, "s***@care.example") || strings.Contains(page, "******") {
					t.Errorf("%s %s<%s>: the answer shows a (masked) address", method, c.prefix, name)
				}
			}
		}
	}
	if n := s.count(`SELECT count(*) FROM subscribers WHERE email_opted_out_at IS NOT NULL OR sms_opted_out_at IS NOT NULL`); n != 0 {
		t.Errorf("%d subscribers opted out by guessed links", n)
	}
	if n := s.count(`SELECT count(*) FROM subscriptions WHERE component_key = 'capa'`); n != 0 {
		t.Error("a guessed manage link changed subscriptions")
	}
}

// linkTiming measures refusals of three kinds of unknown unsubscribe token
// (garbage, the right shape with a wrong MAC, a genuine MAC for a
// subscriber who does not exist), interleaved, and requires their median
// times to be within a factor of 2 of each other: a difference an attacker
// could use would be far larger than the noise this tolerates.
func (s *secWorld) linkTiming(t *testing.T) {
	const rounds = 300
	kinds := []string{"garbage", "wrong MAC", "no such subscriber"}
	raw, _ := base64.RawURLEncoding.DecodeString(s.signer.Make(token.PurposeUnsubscribeEmail, s.subs[0].id, 0))
	times := make([][]time.Duration, len(kinds))
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range rounds {
		b := slices.Clone(raw)
		b[len(b)-1-i%20] ^= byte(1 + i%250)
		toks := []string{
			fmt.Sprintf("garbage-%d", i),
			base64.RawURLEncoding.EncodeToString(b),
			s.signer.Make(token.PurposeUnsubscribeEmail, int64(1_000_000+i), 0),
		}
		for k, tok := range toks {
			start := time.Now()
			resp, err := client.Get(s.p.base() + "/unsubscribe/" + tok)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			times[k] = append(times[k], time.Since(start))
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("%s token %q: %d, want 404", kinds[k], tok, resp.StatusCode)
			}
		}
	}
	medians := make([]time.Duration, len(kinds))
	for k := range kinds {
		slices.Sort(times[k])
		medians[k] = times[k][len(times[k])/2]
	}
	t.Logf("median time to refuse, over %d requests each: %s %v, %s %v, %s %v",
		rounds, kinds[0], medians[0], kinds[1], medians[1], kinds[2], medians[2])
	lo, hi := slices.Min(medians), slices.Max(medians)
	if hi > 2*lo {
		t.Errorf("refusal times differ by more than a factor of 2: %v", medians)
	}
}

func (s *secWorld) crossOrigin(t *testing.T) {
	victim := s.subs[0]
	manage := "/manage/" + s.signer.Make(token.PurposeManage, victim.id, 0)
	unsub := "/unsubscribe/" + s.signer.Make(token.PurposeUnsubscribeEmail, victim.id, 0)
	posts := map[string]string{
		"/subscribe":        form("email", "csrf@care.example", "components", "emar"),
		"/subscribe/verify": form("phone", victim.phone, "code", "123456"),
		"/confirm/1/x":      "",
		manage:              form("action", "unsubscribe"),
		unsub:               "",
		"/admin/login":      form("token", apiToken),
		"/admin/logout":     "",
	}
	for path, body := range posts {
		for name, hdr := range map[string]http.Header{
			"Sec-Fetch-Site: cross-site": with(formType, "Sec-Fetch-Site", "cross-site"),
			"Sec-Fetch-Site: same-site":  with(formType, "Sec-Fetch-Site", "same-site"),
			"a foreign Origin":           with(formType, "Origin", "https://attacker.example"),
			"Origin null":                with(formType, "Origin", "null"),
		} {
			code, h, _ := s.request("POST", path, body, hdr)
			if code != http.StatusForbidden || h.Get("Set-Cookie") != "" {
				t.Errorf("POST %s with %s: %d; want 403", strings.SplitN(path, "/", 3)[1], name, code)
			}
		}
	}
	if n := s.count(`SELECT count(*) FROM subscribers WHERE id = $1 AND (email_opted_out_at IS NOT NULL OR sms_opted_out_at IS NOT NULL)`, victim.id); n != 0 {
		t.Error("a cross-origin post unsubscribed the victim")
	}
	if n := s.count(`SELECT count(*) FROM subscribers WHERE email = 'csrf@care.example'`); n != 0 {
		t.Error("a cross-origin post subscribed someone")
	}
	// Positive controls: the same post from the page itself, and RFC 8058
	// one-click from a mail provider (no browser headers), both work.
	other := "/unsubscribe/" + s.signer.Make(token.PurposeUnsubscribeSMS, victim.id, 0)
	if code, _, _ := s.request("POST", other, "", with(formType, "Sec-Fetch-Site", "same-origin", "Origin", s.p.base())); code != http.StatusOK {
		t.Errorf("same-origin unsubscribe: %d", code)
	}
	if code, _, _ := s.request("POST", unsub, "List-Unsubscribe=One-Click", formType); code != http.StatusOK {
		t.Errorf("RFC 8058 one-click unsubscribe: %d", code)
	}
	if n := s.count(`SELECT count(*) FROM subscribers WHERE id = $1 AND email_opted_out_at IS NOT NULL AND sms_opted_out_at IS NOT NULL`, victim.id); n != 1 {
		t.Error("the genuine unsubscribes did not take")
	}
}

// subscribeBurst: the per-address limit (3 at once) and the per-client
// limit (10 at once, then one a minute) hold when 1,000 requests arrive
// together from one client, whatever X-Forwarded-For it claims.
func (s *secWorld) subscribeBurst(t *testing.T) {
	var same []int
	for range 5 {
		code, _, _ := s.request("POST", "/subscribe", form("email", "same@care.example", "components", "emar"), formType)
		same = append(same, code)
	}
	if !slices.Equal(same, []int{200, 200, 200, 429, 429}) {
		t.Errorf("five subscribes for one address: %v; want three taken, then 429", same)
	}
	const burst = 1000
	var (
		mu    sync.Mutex
		codes = map[int]int{}
		wg    sync.WaitGroup
		next  = make(chan int)
	)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	start := time.Now()
	for range 32 {
		wg.Go(func() {
			for i := range next {
				body := form("email", fmt.Sprintf("burst-%d@care.example", i), "components", "emar")
				req, err := http.NewRequest("POST", s.p.base()+"/subscribe", strings.NewReader(body))
				if err != nil {
					panic(err)
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				// A spoofed proxy header must not buy a fresh bucket:
				// CRIER_CLIENT_IP_HEADER is not set, so none is trusted.
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
				req.Header.Set("X-Real-IP", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
				resp, err := c.Do(req)
				code := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	for i := range burst {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d subscribes from one client in %s: %v", burst, took.Round(time.Millisecond), codes)
	// 10 at once, 5 used above, plus one per minute since.
	allowed := 10 - 5 + int(time.Since(start)/time.Minute) + 1
	if codes[200] > allowed || codes[200]+codes[429] != burst {
		t.Errorf("burst answers %v; want at most %d taken and the rest 429", codes, allowed)
	}
	var confirmations int
	for _, m := range s.sinks.smtp.Messages() {
		if len(m.To) == 1 && strings.HasPrefix(m.To[0], "burst-") {
			confirmations++
		}
	}
	if confirmations > allowed {
		t.Errorf("%d confirmation emails sent for the burst, more than the %d allowed", confirmations, allowed)
	}
	if n := s.count(`SELECT count(*) FROM subscribers WHERE email LIKE 'burst-%'`); n > allowed {
		t.Errorf("%d subscribers created by the burst", n)
	}
}

// noSecrets scans everything the process wrote (its whole stderr and
// stdout) and every answer it gave for the test's addresses, tokens and
// credentials.
func (s *secWorld) noSecrets(t *testing.T) {
	// Reports that include the refused addresses, masked.
	code, _, body := s.request("GET", "/v1/events/sec-0001/deliveries", "", s.bearer(apiToken))
	if code != http.StatusOK || !strings.Contains(body, "failed") {
		t.Errorf("GET deliveries: %d %s", code, trim(body))
	}
	credentials := map[string]string{
		"API token":         apiToken,
		"token secret":      tokenSecret,
		"Twilio auth token": twiliotest.ExampleAuthToken,
		"SMTP password":     smtpPassword,
	}
	personal := map[string]string{}
	for i, sub := range s.subs {
		personal[fmt.Sprintf("subscriber %d email", i)] = sub.email
		personal[fmt.Sprintf("subscriber %d phone", i)] = sub.phone
	}
	personal["subscribe form address"] = "same@care.example"
	personal["burst address"] = "burst-1@care.example"
	links := map[string]string{}
	for i, sub := range s.subs {
		links[fmt.Sprintf("manage token %d", i)] = s.signer.Make(token.PurposeManage, sub.id, 0)
		links[fmt.Sprintf("unsubscribe token %d", i)] = s.signer.Make(token.PurposeUnsubscribeEmail, sub.id, 0)
	}
	confirm := regexp.MustCompile(`/confirm/[0-9]+/([A-Za-z0-9_-]{20,})`)
	for _, m := range s.sinks.smtp.Messages() {
		for _, p := range confirm.FindAllStringSubmatch(string(m.Data), -1) {
			links["confirmation link "+p[1][:6]] = p[1]
		}
	}
	logs := s.p.logs.String()
	if len(logs) < 1000 {
		t.Fatalf("the process wrote only %d bytes: nothing to scan", len(logs))
	}
	scan := func(where, text string, secrets map[string]string) {
		for name, v := range secrets {
			if i := strings.Index(text, v); i >= 0 {
				t.Errorf("%s holds the %s: …%s…", where, name, text[max(0, i-200):min(len(text), i+len(v)+100)])
			}
		}
	}
	// The scan means something only if addresses reached the log and the
	// answers at all, masked: the subscribe form logs the address it was
	// given, and the delivery report quotes the SMTP server's and Twilio's
	// refusals, which name the recipient.
	if !strings.Contains(logs, "s***@care.example") {
		t.Error("the log never mentions a masked address: the scan below proves little")
	}
	for _, masked := range []string{"s***@care.example", phone.Mask(s.subs[2].phone)} {
		if !strings.Contains(body, masked) {
			t.Errorf("the delivery report never mentions %q: the scan below proves little\n%s", masked, trim(body))
		}
	}
	scan("the log", logs, credentials)
	scan("the log", logs, personal)
	scan("the log", logs, links)
	s.mu.Lock()
	answers := strings.Join(s.answers, "\n")
	s.mu.Unlock()
	scan("an answer", answers, credentials)
	scan("an answer", answers, personal)
	t.Logf("scanned %d bytes of log and %d answers (%d bytes) for %d secrets", len(logs), len(s.answers), len(answers), len(credentials)+len(personal)+len(links))
}
