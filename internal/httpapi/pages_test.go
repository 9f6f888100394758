package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/phone"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/token"
)

var (
	confirmLinkRe = regexp.MustCompile(`https?://\S+/confirm/\d+/[A-Za-z0-9_-]+`)
	manageLinkRe  = regexp.MustCompile(`https?://\S+/manage/[A-Za-z0-9_-]+`)
	codeRe        = regexp.MustCompile(`\b(\d{6})\b`)
)

func subscribeForm(email, phone string, components ...string) url.Values {
	f := url.Values{"email": {email}, "phone": {phone}}
	for _, c := range components {
		f.Add("components", c)
	}
	return f
}

// lastCode returns the code in the last text sent to number.
func lastCode(t *testing.T, r *recorder, number string) string {
	t.Helper()
	msgs := r.sent()
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].To == number {
			m := codeRe.FindStringSubmatch(msgs[i].Text)
			if m == nil {
				t.Fatalf("no code in %q", msgs[i].Text)
			}
			return m[1]
		}
	}
	t.Fatalf("no text to %s", number)
	return ""
}

func findSubscriber(t *testing.T, b *bundle, email, phone string) store.Subscriber {
	t.Helper()
	subs, err := b.store.ListSubscribers(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if (email != "" && strings.EqualFold(s.Email, email)) || (phone != "" && s.Phone == phone) {
			return s
		}
	}
	t.Fatalf("no subscriber %s %s", email, phone)
	return store.Subscriber{}
}

func TestSubscribePage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.get(t, "/subscribe")
	expectStatus(t, a, http.StatusOK)
	page := a.page()
	for _, want := range []string{
		`<label for="email">`, `<label for="phone">`, `value="atlas-sync/sync-pod-a"`, `<legend>`,
		`Covers Sync Pod A and Sync Pod B`, `name="viewport"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("subscribe page lacks %s", want)
		}
	}
	for h, want := range map[string]string{
		"Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY", "Content-Type": "text/html; charset=utf-8",
	} {
		if got := a.header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if csp := a.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src") && !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q allows scripts", csp)
	}

	// Without an SMS sender the mobile field is not offered.
	b2 := setup(t, func(o *setupOptions) { o.senders = map[string]deliver.Sender{deliver.ChannelEmail: &recorder{}} })
	if page := b2.get(t, "/subscribe").page(); strings.Contains(page, `id="phone"`) || !strings.Contains(page, `id="email"`) {
		t.Error("the phone field is offered without an SMS sender")
	}
}

func TestSubscribeValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name  string
		form  url.Values
		field string
	}{
		{"nothing", subscribeForm("", "", "emar"), `id="email-error"`},
		{"bad email", subscribeForm("jo at example", "", "emar"), `id="email-error"`},
		{"drama number", subscribeForm("", "07700 900123", "emar"), `id="phone-error"`},
		{"landline", subscribeForm("", "020 7946 0018", "emar"), `id="phone-error"`},
		{"no components", subscribeForm("jo@example.org", ""), `id="components-error"`},
		{"unknown component", subscribeForm("jo@example.org", "", "lunch"), `id="components-error"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := b.post(t, "/subscribe", tc.form)
			expectStatus(t, a, http.StatusUnprocessableEntity)
			if !strings.Contains(a.page(), tc.field) || !strings.Contains(a.page(), `aria-invalid="true"`) && tc.field != `id="components-error"` {
				t.Errorf("no %s in\n%s", tc.field, a.body)
			}
		})
	}
	if len(b.email.sent())+len(b.sms.sent()) != 0 {
		t.Error("an invalid request sent a message")
	}
	subs, _ := b.store.ListSubscribers(context.Background(), 0, 10)
	if len(subs) != 0 {
		t.Errorf("an invalid request created %d subscribers", len(subs))
	}
}

func TestDoubleOptIn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.secret("alex@oakview-care.example", "+447400123456")
	a := b.post(t, "/subscribe", subscribeForm("alex@oakview-care.example", "07400 123456", "atlas-sync/sync-pod-a", "emar"))
	expectStatus(t, a, http.StatusOK)
	if !strings.Contains(a.page(), "a***@oakview-care.example") || !strings.Contains(a.page(), "+44******3456") || !strings.Contains(a.page(), `name="code"`) {
		t.Fatalf("sent page:\n%s", a.body)
	}
	sub := findSubscriber(t, b, "alex@oakview-care.example", "")
	if sub.Phone != "+447400123456" || sub.EmailConfirmedAt != nil || sub.SMSConfirmedAt != nil || strings.Join(sub.Components, ",") != "atlas-sync/sync-pod-a,emar" {
		t.Fatalf("subscriber after subscribing %+v", sub)
	}
	// Nothing but the confirmations goes out: an incident now reaches nobody.
	ev := incidenttest.Updates()[0]
	res, err := b.store.Ingest(context.Background(), ev, incidenttest.Raw(ev), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Queued["email"]+res.Queued["sms"] != 0 {
		t.Fatalf("unconfirmed addresses got deliveries: %+v", res)
	}

	// Email: the link shows a button; only the POST confirms.
	mails := b.email.sent()
	if len(mails) != 1 || mails[0].To != "alex@oakview-care.example" {
		t.Fatalf("emails %+v", mails)
	}
	link := confirmLinkRe.FindString(mails[0].Text)
	if link == "" || !strings.HasPrefix(link, b.url+"/confirm/") {
		t.Fatalf("no confirmation link in %q", mails[0].Text)
	}
	path := strings.TrimPrefix(link, b.url)
	b.secret(path[strings.LastIndexByte(path, '/')+1:])
	a = b.get(t, path)
	expectStatus(t, a, http.StatusOK)
	if !strings.Contains(a.page(), `id="confirm"`) {
		t.Fatalf("confirm page:\n%s", a.body)
	}
	if b.getSubscriber(t, sub.ID).EmailConfirmedAt != nil {
		t.Fatal("GET confirmed the address")
	}
	a = b.post(t, path, nil)
	expectStatus(t, a, http.StatusOK)
	if !strings.Contains(a.page(), "confirmed") || !strings.Contains(a.page(), "/manage/") {
		t.Errorf("confirmed page:\n%s", a.body)
	}
	if b.getSubscriber(t, sub.ID).EmailConfirmedAt == nil {
		t.Fatal("POST did not confirm the address")
	}

	// SMS: a wrong code is refused, the right one confirms.
	texts := b.sms.sent()
	if len(texts) != 1 || texts[0].To != "+447400123456" {
		t.Fatalf("texts %+v", texts)
	}
	code := lastCode(t, b.sms, "+447400123456")
	b.secret(code)
	wrong := fmt.Sprintf("%06d", (atoi(code)+1)%1000000)
	a = b.post(t, "/subscribe/verify", url.Values{"phone": {"+447400123456"}, "code": {wrong}})
	expectStatus(t, a, http.StatusUnprocessableEntity)
	if !strings.Contains(a.page(), `id="code-error"`) {
		t.Errorf("wrong code page:\n%s", a.body)
	}
	a = b.post(t, "/subscribe/verify", url.Values{"phone": {"+447400123456"}, "code": {code[:3] + " " + code[3:]}})
	expectStatus(t, a, http.StatusOK)
	if b.getSubscriber(t, sub.ID).SMSConfirmedAt == nil {
		t.Fatal("the right code did not confirm the number")
	}
	// A code is used once.
	expectStatus(t, b.post(t, "/subscribe/verify", url.Values{"phone": {"+447400123456"}, "code": {code}}), http.StatusUnprocessableEntity)

	// The codes are stored hashed.
	var stored int
	if err := b.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM sms_codes`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Errorf("%d codes left after use", stored)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestCodeExpiresAndAttemptsAreLimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	num := "+447400123456"
	b.secret(num)
	expectStatus(t, b.post(t, "/subscribe", subscribeForm("", num, "emar")), http.StatusOK)
	code := lastCode(t, b.sms, num)
	b.secret(code)
	var hash []byte
	if err := b.store.Pool().QueryRow(context.Background(), `SELECT code_hash FROM sms_codes WHERE phone = $1`, num).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(hash), code) {
		t.Fatal("the code is stored in plain form")
	}
	other := fmt.Sprintf("%06d", (atoi(code)+7)%1000000)
	for range 5 {
		expectStatus(t, b.post(t, "/subscribe/verify", url.Values{"phone": {num}, "code": {other}}), http.StatusUnprocessableEntity)
	}
	// Five wrong tries spend the code: the right one no longer works.
	expectStatus(t, b.post(t, "/subscribe/verify", url.Values{"phone": {num}, "code": {code}}), http.StatusUnprocessableEntity)
	sub := findSubscriber(t, b, "", num)
	if sub.SMSConfirmedAt != nil {
		t.Fatal("confirmed after five wrong codes")
	}

	// A new code expires after ten minutes.
	expectStatus(t, b.post(t, "/subscribe", subscribeForm("", num, "emar"), "X-Test", "again"), http.StatusOK)
	code = lastCode(t, b.sms, num)
	b.secret(code)
	if _, err := b.store.Pool().Exec(context.Background(), `UPDATE sms_codes SET expires_at = now() - interval '1 second' WHERE phone = $1`, num); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, b.post(t, "/subscribe/verify", url.Values{"phone": {num}, "code": {code}}), http.StatusUnprocessableEntity)
	var ttl time.Duration
	expectStatus(t, b.post(t, "/subscribe", subscribeForm("", num, "emar")), http.StatusOK)
	var secs float64
	if err := b.store.Pool().QueryRow(context.Background(), `SELECT extract(epoch FROM expires_at - created_at) FROM sms_codes WHERE phone = $1`, num).Scan(&secs); err != nil {
		t.Fatal(err)
	}
	ttl = time.Duration(secs * float64(time.Second))
	if ttl < 9*time.Minute || ttl > 11*time.Minute {
		t.Errorf("codes live %v, want 10m", ttl)
	}
	code = lastCode(t, b.sms, num)
	b.secret(code)
	expectStatus(t, b.post(t, "/subscribe/verify", url.Values{"phone": {num}, "code": {code}}), http.StatusOK)
	// A number nobody asked a code for gets the same answer as a wrong code.
	a := b.post(t, "/subscribe/verify", url.Values{"phone": {"+447400999999"}, "code": {"123456"}})
	expectStatus(t, a, http.StatusUnprocessableEntity)
}

func TestSubscribeDoesNotTellKnownAddresses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// a1 is confirmed, a2 unconfirmed, a3 new: their masked forms are
	// equal, so the pages must be identical.
	active := b.subscriber(t, store.NewSubscriber{Email: "a1@oakview-care.example", Components: []string{"capa"}, ConfirmEmail: true})
	b.subscriber(t, store.NewSubscriber{Email: "a2@oakview-care.example", Components: []string{"capa"}})
	b.secret("a3@oakview-care.example")
	var pages []answer
	for _, addr := range []string{"a1@oakview-care.example", "a2@oakview-care.example", "a3@oakview-care.example"} {
		pages = append(pages, b.post(t, "/subscribe", subscribeForm(addr, "", "emar")))
	}
	for i, p := range pages {
		expectStatus(t, p, http.StatusOK)
		if p.page() != pages[0].page() {
			t.Errorf("answer %d differs from answer 0:\n%s\n----\n%s", i, p.body, pages[0].body)
		}
	}
	mails := b.email.sent()
	if len(mails) != 3 {
		t.Fatalf("%d emails, want 3", len(mails))
	}
	// The known, confirmed address is told it is subscribed, with its
	// manage link, and is not changed.
	if mails[0].To != "a1@oakview-care.example" || !manageLinkRe.MatchString(mails[0].Text) || confirmLinkRe.MatchString(mails[0].Text) {
		t.Errorf("email to the subscribed address: %q", mails[0].Text)
	}
	if got := b.getSubscriber(t, active); strings.Join(got.Components, ",") != "capa" {
		t.Errorf("a subscribe request changed a confirmed subscriber: %+v", got)
	}
	for _, m := range mails[1:] {
		if !confirmLinkRe.MatchString(m.Text) {
			t.Errorf("email to %s has no confirmation link: %q", m.To, m.Text)
		}
	}
	// The same for phone numbers: a known one and a new one.
	known, fresh := "+447400123401", "+447400123402"
	b.subscriber(t, store.NewSubscriber{Phone: known, Components: []string{"capa"}, ConfirmSMS: true})
	b.secret(fresh)
	p1 := b.post(t, "/subscribe", subscribeForm("", known, "emar"))
	p2 := b.post(t, "/subscribe", subscribeForm("", fresh, "emar"))
	expectStatus(t, p1, http.StatusOK)
	expectStatus(t, p2, http.StatusOK)
	blank := func(page, num string) string {
		return strings.ReplaceAll(strings.ReplaceAll(page, num, "N"), phone.Mask(num), "M")
	}
	if blank(p1.page(), known) != blank(p2.page(), fresh) {
		t.Errorf("phone answers differ:\n%s\n----\n%s", p1.body, p2.body)
	}
	if len(b.sms.sent()) != 2 {
		t.Errorf("%d texts, want a code to each number", len(b.sms.sent()))
	}
}

func TestSubscribeRateLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOptions) {
		o.cfg.ClientIPHeader = "X-Forwarded-For"
		o.cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} // the test client
	})
	num := "+447400123456"
	b.secret(num)
	// Per number, whatever the client: three texts, then no more.
	for i := range 5 {
		a := b.post(t, "/subscribe", subscribeForm("", num, "emar"), "X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i+1))
		want := http.StatusOK
		if i >= 3 {
			want = http.StatusTooManyRequests
		}
		expectStatus(t, a, want)
	}
	if n := len(b.sms.sent()); n != 3 {
		t.Errorf("%d texts to one number, want 3", n)
	}
	// Per client, whatever the address: ten requests, then no more.
	for i := range 12 {
		a := b.post(t, "/subscribe", subscribeForm(fmt.Sprintf("person%d@example.org", i), "", "emar"), "X-Forwarded-For", "198.51.100.7")
		want := http.StatusOK
		if i >= 10 {
			want = http.StatusTooManyRequests
		}
		expectStatus(t, a, want)
		b.secret(fmt.Sprintf("person%d@example.org", i))
	}
	// Another client is not affected.
	expectStatus(t, b.post(t, "/subscribe", subscribeForm("other@example.org", "", "emar"), "X-Forwarded-For", "198.51.100.8"), http.StatusOK)
	// Time refills the buckets.
	b.now.advance(11 * time.Minute)
	expectStatus(t, b.post(t, "/subscribe", subscribeForm("", num, "emar"), "X-Forwarded-For", "192.0.2.99"), http.StatusOK)
}

func TestCrossOriginFormsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.subscriber(t, store.NewSubscriber{Email: "sam@riverside-care.example", Components: []string{"capa"}, ConfirmEmail: true})
	manage := "/manage/" + b.manageToken(id)
	b.secret(b.manageToken(id))
	form := url.Values{"components": {"emar"}, "channels": {"email"}, "action": {"save"}}
	for name, hdr := range map[string][]string{
		"Sec-Fetch-Site cross-site": {"Sec-Fetch-Site", "cross-site"},
		"Sec-Fetch-Site same-site":  {"Sec-Fetch-Site", "same-site"},
		"foreign Origin":            {"Origin", "https://evil.example"},
	} {
		for _, path := range []string{manage, "/subscribe", "/admin/login", "/unsubscribe/" + b.unsubscribeToken(id, "email")} {
			req := append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)
			a := b.request(t, http.MethodPost, path, strings.NewReader(form.Encode()), req...)
			if a.status != http.StatusForbidden {
				t.Errorf("%s POST %s: status %d, want 403", name, path, a.status)
			}
		}
	}
	sub := b.getSubscriber(t, id)
	if strings.Join(sub.Components, ",") != "capa" || sub.EmailOptedOutAt != nil {
		t.Fatalf("a cross-site post changed the subscriber: %+v", sub)
	}
	// The same post from the site itself works.
	expectStatus(t, b.post(t, manage, form), http.StatusSeeOther)
	if sub := b.getSubscriber(t, id); strings.Join(sub.Components, ",") != "emar" {
		t.Fatalf("same-origin post did not save: %+v", sub)
	}
}

func TestOneClickUnsubscribe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.subscriber(t, store.NewSubscriber{Email: "pat@hillcrest.example", Phone: "+447400123456", Components: []string{"atlas-sync"}, ConfirmEmail: true, ConfirmSMS: true})
	ev := incidenttest.Updates()[0]
	if _, err := b.store.Ingest(context.Background(), ev, incidenttest.Raw(ev), 0); err != nil {
		t.Fatal(err)
	}
	tok := b.unsubscribeToken(id, "email")
	b.secret(tok)

	// GET only shows the button.
	a := b.get(t, "/unsubscribe/"+tok)
	expectStatus(t, a, http.StatusOK)
	if !strings.Contains(a.page(), `id="unsubscribe"`) || !strings.Contains(a.page(), "p***@hillcrest.example") {
		t.Fatalf("unsubscribe page:\n%s", a.body)
	}
	if b.getSubscriber(t, id).EmailOptedOutAt != nil {
		t.Fatal("GET unsubscribed")
	}
	// The RFC 8058 POST a mail provider sends: no cookies, no Origin, no
	// Sec-Fetch-Site.
	a = b.request(t, http.MethodPost, "/unsubscribe/"+tok, strings.NewReader("List-Unsubscribe=One-Click"),
		"Content-Type", "application/x-www-form-urlencoded")
	expectStatus(t, a, http.StatusOK)
	if !strings.Contains(a.page(), "unsubscribed") {
		t.Errorf("answer:\n%s", a.body)
	}
	sub := b.getSubscriber(t, id)
	if sub.EmailOptedOutAt == nil || sub.SMSOptedOutAt != nil {
		t.Fatalf("after one-click %+v", sub)
	}
	counts, err := b.store.CountDeliveries(context.Background(), store.Scope{EventID: ev.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range counts {
		if c.Channel == "email" && c.State != store.StateSuppressed || c.Channel == "sms" && c.State != store.StateQueued {
			t.Errorf("after one-click: %d %s deliveries %s", c.Count, c.Channel, c.State)
		}
	}
	// Again is harmless; the SMS link unsubscribes the SMS channel.
	expectStatus(t, b.request(t, http.MethodPost, "/unsubscribe/"+tok, strings.NewReader("List-Unsubscribe=One-Click"), "Content-Type", "application/x-www-form-urlencoded"), http.StatusOK)
	smsTok := b.unsubscribeToken(id, "sms")
	b.secret(smsTok)
	expectStatus(t, b.post(t, "/unsubscribe/"+smsTok, url.Values{}), http.StatusOK)
	if sub := b.getSubscriber(t, id); sub.SMSOptedOutAt == nil {
		t.Fatal("the SMS link did not unsubscribe SMS")
	}
}

func TestInvalidLinksLookTheSame(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.subscriber(t, store.NewSubscriber{Email: "kim@hillcrest.example", Components: []string{"capa"}, ConfirmEmail: true})
	gone := b.subscriber(t, store.NewSubscriber{Email: "gone@hillcrest.example", Components: []string{"capa"}, ConfirmEmail: true})
	goneTok := b.manageToken(gone)
	if err := b.store.DeleteSubscriber(context.Background(), gone); err != nil {
		t.Fatal(err)
	}
	good := b.manageToken(id)
	b.secret(good)
	tampered := []byte(good)
	tampered[len(tampered)-1] ^= 1
	if tampered[len(tampered)-1] == good[len(good)-1] {
		t.Fatal("tampering failed")
	}
	var bodies []string
	for _, path := range []string{
		"/manage/x",
		"/manage/" + strings.Repeat("A", len(good)),
		"/manage/" + string(tampered),
		"/manage/" + goneTok,
		"/manage/" + b.unsubscribeToken(id, "email"), // right id, wrong purpose
		"/unsubscribe/" + good,                       // manage token on the unsubscribe page
		"/unsubscribe/nonsense",
		"/confirm/1/nonsense",
		fmt.Sprintf("/confirm/%d/%s", id, good),
	} {
		a := b.get(t, path)
		expectStatus(t, a, http.StatusNotFound)
		bodies = append(bodies, a.page())
	}
	for i, body := range bodies {
		if body != bodies[0] {
			t.Errorf("404 page %d differs from the first", i)
		}
	}
	expectStatus(t, b.get(t, "/manage/"+good), http.StatusOK)
	// POSTs with bad tokens change nothing.
	expectStatus(t, b.post(t, "/manage/"+string(tampered), url.Values{"action": {"unsubscribe"}}), http.StatusNotFound)
	if b.getSubscriber(t, id).EmailOptedOutAt != nil {
		t.Fatal("a tampered token unsubscribed")
	}
}

func TestConfirmLinkExpiresAndIsBoundToTheAddress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.secret("lee@hillcrest.example", "lee.new@hillcrest.example")
	expectStatus(t, b.post(t, "/subscribe", subscribeForm("lee@hillcrest.example", "", "capa")), http.StatusOK)
	link := confirmLinkRe.FindString(b.email.sent()[0].Text)
	path := strings.TrimPrefix(link, b.url)
	b.secret(path[strings.LastIndexByte(path, '/')+1:])
	sub := findSubscriber(t, b, "lee@hillcrest.example", "")

	// Two days later the link has expired.
	b.now.advance(49 * time.Hour)
	expectStatus(t, b.get(t, path), http.StatusNotFound)
	expectStatus(t, b.post(t, path, nil), http.StatusNotFound)
	b.now.advance(-49 * time.Hour)
	expectStatus(t, b.get(t, path), http.StatusOK)

	// After the address changes, the old link confirms nothing.
	expectStatus(t, b.call(t, "PATCH", fmt.Sprintf("/v1/subscribers/%d", sub.ID), `{"email": "lee.new@hillcrest.example"}`), http.StatusOK)
	expectStatus(t, b.post(t, path, nil), http.StatusNotFound)
	if b.getSubscriber(t, sub.ID).EmailConfirmedAt != nil {
		t.Fatal("an old link confirmed a new address")
	}
}

func TestManagePage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.subscriber(t, store.NewSubscriber{Email: "robin@oakview-care.example", Phone: "+447400123456", Components: []string{"atlas-sync"}, ConfirmEmail: true})
	tok := b.manageToken(id)
	b.secret(tok)
	path := "/manage/" + tok

	a := b.get(t, path)
	expectStatus(t, a, http.StatusOK)
	page := a.page()
	for _, want := range []string{
		`value="atlas-sync" checked`, `id="channel-email" name="channels" value="email" checked`,
		`id="channel-sms" name="channels" value="sms" disabled`, "r***@oakview-care.example", "+44******3456", "Not confirmed yet",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("manage page lacks %s", want)
		}
	}
	if strings.Contains(page, "robin@") || strings.Contains(page, "7400123456") {
		t.Error("manage page shows an address in full")
	}
	a = b.post(t, path, url.Values{"action": {"save"}, "components": {"emar", "capa"}})
	expectStatus(t, a, http.StatusSeeOther)
	if loc := a.header.Get("Location"); loc != path+"?saved=1" {
		t.Errorf("redirect to %q", loc)
	}
	sub := b.getSubscriber(t, id)
	if strings.Join(sub.Components, ",") != "capa,emar" || sub.EmailOptedOutAt == nil {
		t.Fatalf("after saving %+v", sub)
	}
	if !strings.Contains(b.get(t, path+"?saved=1").page(), `id="saved"`) {
		t.Error("no saved notice")
	}
	// Switching email back on.
	expectStatus(t, b.post(t, path, url.Values{"action": {"save"}, "components": {"emar"}, "channels": {"email", "sms"}}), http.StatusSeeOther)
	sub = b.getSubscriber(t, id)
	if sub.EmailOptedOutAt != nil || sub.SMSConfirmedAt != nil || strings.Join(sub.Components, ",") != "emar" {
		t.Fatalf("after switching on %+v", sub)
	}
	// No components is refused.
	a = b.post(t, path, url.Values{"action": {"save"}, "channels": {"email"}})
	expectStatus(t, a, http.StatusUnprocessableEntity)
	if !strings.Contains(a.page(), `id="components-error"`) {
		t.Errorf("no components error:\n%s", a.body)
	}
	// Unsubscribe from everything.
	expectStatus(t, b.post(t, path, url.Values{"action": {"unsubscribe"}}), http.StatusOK)
	if sub := b.getSubscriber(t, id); sub.EmailOptedOutAt == nil || sub.SMSOptedOutAt == nil {
		t.Fatalf("after unsubscribing %+v", sub)
	}
}

// TestManagePageDestinations: a subscriber with a Teams destination sees
// it on the manage page, its URL masked, and can switch it off and on.
func TestManagePageDestinations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	teams := "https://oakview.webhook.office.com/webhookb2/secret-path?sig=secret"
	id := b.subscriber(t, store.NewSubscriber{Email: "robin@oakview-care.example", Components: []string{"emar"}, ConfirmEmail: true, TeamsURL: teams})
	tok := b.manageToken(id)
	b.secret(tok)
	path := "/manage/" + tok
	page := b.get(t, path).page()
	if !strings.Contains(page, `id="channel-teams" name="channels" value="teams" checked`) || !strings.Contains(page, "https://oakview.webhook.office.com/…") {
		t.Errorf("manage page lacks the Teams destination:\n%s", page)
	}
	if strings.Contains(page, "secret-path") || strings.Contains(page, "sig=") || strings.Contains(page, "channel-slack") {
		t.Error("manage page shows the Teams URL in full, or a destination the subscriber does not have")
	}
	expectStatus(t, b.post(t, path, url.Values{"action": {"save"}, "components": {"emar"}, "channels": {"email"}}), http.StatusSeeOther)
	if sub := b.getSubscriber(t, id); sub.TeamsOptedOutAt == nil || sub.EmailOptedOutAt != nil {
		t.Fatalf("after switching Teams off %+v", sub)
	}
	expectStatus(t, b.post(t, path, url.Values{"action": {"save"}, "components": {"emar"}, "channels": {"email", "teams"}}), http.StatusSeeOther)
	if sub := b.getSubscriber(t, id); sub.TeamsOptedOutAt != nil {
		t.Fatalf("after switching Teams on %+v", sub)
	}
}

func TestAdminSignIn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.get(t, "/admin")
	expectStatus(t, a, http.StatusUnauthorized)
	if !strings.Contains(a.page(), `id="token"`) {
		t.Fatal("no sign-in form")
	}
	expectStatus(t, b.post(t, "/admin/login", url.Values{"token": {"wrong-token-wrong-token"}}), http.StatusUnauthorized)
	a = b.post(t, "/admin/login", url.Values{"token": {apiToken}})
	expectStatus(t, a, http.StatusSeeOther)
	cookies := (&http.Response{Header: a.header}).Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	c := cookies[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/admin" || c.MaxAge <= 0 {
		t.Errorf("cookie %+v", c)
	}
	if strings.Contains(c.Value, apiToken) || strings.Contains(c.Value, apiToken[:8]) {
		t.Fatal("the cookie holds the token")
	}
	b.secret(c.Value)
	withCookie := func(v string) answer { return b.get(t, "/admin", "Cookie", "crier_admin="+v) }
	expectStatus(t, withCookie(c.Value), http.StatusOK)
	tampered := []byte(c.Value)
	tampered[5] ^= 2
	expectStatus(t, withCookie(string(tampered)), http.StatusUnauthorized)
	expectStatus(t, withCookie(""), http.StatusUnauthorized)
	b.now.advance(13 * time.Hour)
	expectStatus(t, withCookie(c.Value), http.StatusUnauthorized)
	b.now.advance(-13 * time.Hour)
	// A cookie made with the right key and token but for no session that
	// was started is refused: the session lives on the server.
	forged := b.signer.Make(token.PurposeAdminSession+":"+apiToken, 1<<40, uint32(b.now.Now().Add(time.Hour).Unix()))
	expectStatus(t, withCookie(forged), http.StatusUnauthorized)
	// Signing out clears the cookie and ends the session: the old cookie,
	// kept by whoever copied it, opens nothing.
	a = b.post(t, "/admin/logout", nil, "Cookie", "crier_admin="+c.Value)
	expectStatus(t, a, http.StatusSeeOther)
	if cs := (&http.Response{Header: a.header}).Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Errorf("sign-out cookies %v", cs)
	}
	expectStatus(t, withCookie(c.Value), http.StatusUnauthorized)

	// Sign out everywhere ends every session, not only the caller's.
	var sessions []string
	for range 3 {
		a = b.post(t, "/admin/login", url.Values{"token": {apiToken}})
		expectStatus(t, a, http.StatusSeeOther)
		v := (&http.Response{Header: a.header}).Cookies()[0].Value
		b.secret(v)
		expectStatus(t, withCookie(v), http.StatusOK)
		sessions = append(sessions, v)
	}
	expectStatus(t, b.post(t, "/admin/logout-everywhere", nil), http.StatusUnauthorized)
	expectStatus(t, withCookie(sessions[2]), http.StatusOK)
	expectStatus(t, b.post(t, "/admin/logout-everywhere", nil, "Cookie", "crier_admin="+sessions[0]), http.StatusSeeOther)
	for i, v := range sessions {
		if a := withCookie(v); a.status != http.StatusUnauthorized {
			t.Errorf("session %d after signing out everywhere: %d", i, a.status)
		}
	}

	// Over HTTPS the cookie is Secure.
	bs := setup(t, func(o *setupOptions) { o.tls = true })
	a = bs.post(t, "/admin/login", url.Values{"token": {apiToken}})
	expectStatus(t, a, http.StatusSeeOther)
	if cs := (&http.Response{Header: a.header}).Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("HTTPS cookie %v", cs)
	}
	bs.secret((&http.Response{Header: a.header}).Cookies()[0].Value)
}

func TestSignInIsRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	limited := false
	for range 12 {
		if a := b.post(t, "/admin/login", url.Values{"token": {"guess-guess-guess-guess"}}); a.status == http.StatusTooManyRequests {
			limited = true
		}
	}
	if !limited {
		t.Fatal("twelve wrong tokens in a row were not rate-limited")
	}
	// Even the right token waits.
	expectStatus(t, b.post(t, "/admin/login", url.Values{"token": {apiToken}}), http.StatusTooManyRequests)
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, _ := ingestSeed(t, b)
	a := b.get(t, "/admin", "Authorization", "Bearer "+apiToken)
	expectStatus(t, a, http.StatusOK)
	page := a.page()
	for _, want := range []string{
		`id="event-` + id + `"`, `class="seg s-delivered"`, `class="seg s-failed"`, `role="img"`,
		`email: 3 in all: 1 delivered, 1 failed, 1 superseded`, `style="width: 33.33%"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %s", want)
		}
	}
}

func TestConfirmationSendFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.secret("fail@example.org", "+447400123456")
	b.sms.fail(deliver.Permanent("21211", errors.New("invalid number")))
	b.email.fail(deliver.Transient("421", errors.New("try later")))
	a := b.post(t, "/subscribe", subscribeForm("fail@example.org", "+447400123456", "emar"))
	expectStatus(t, a, http.StatusServiceUnavailable)
	if !strings.Contains(a.page(), "refused") || !strings.Contains(a.page(), "try again in a few minutes") {
		t.Errorf("failure page:\n%s", a.body)
	}
}
