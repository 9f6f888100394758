package httpapi_test

// Browser tests: headless Chromium driven with chromedp through the pages,
// with real senders (internal/email to Mailpit, internal/sms to the
// twiliotest server). A missing Chromium or Mailpit fails the test.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/email"
	"github.com/crier-dev/crier/internal/sms"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/twiliotest"
)

const chromiumPath = "/usr/bin/chromium"

// browser starts headless Chromium with a fresh profile and returns a tab's
// context, closed when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath
	if _, err := os.Stat(path); err != nil {
		if p, lerr := exec.LookPath("chromium"); lerr == nil {
			path = p
		} else {
			t.Fatalf("Chromium is needed for the browser tests and is not at %s or on PATH: install it (apt-get install chromium)", chromiumPath)
		}
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium at %s: %v", path, err)
	}
	return ctx
}

// do runs browser steps, failing the test with what it was doing.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("read #%s: %v", id, err)
	}
	return s
}

// screenshot saves a PNG of the whole page as a test artifact.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s is not a PNG", name)
	}
	path := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// mailpit is a Mailpit server started for one test.
type mailpit struct {
	smtpAddr string
	api      string
}

func mailpitBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		for gp := range strings.SplitSeq(strings.TrimSpace(string(out)), string(os.PathListSeparator)) {
			p := filepath.Join(gp, "bin", "mailpit")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	t.Fatal("Mailpit is needed for the browser tests and is not on PATH or in $(go env GOPATH)/bin: install it with go install github.com/axllent/mailpit@v1.33.1")
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startMailpit(t *testing.T) *mailpit {
	t.Helper()
	bin := mailpitBinary(t)
	smtpPort, httpPort := freePort(t), freePort(t)
	m := &mailpit{smtpAddr: fmt.Sprintf("127.0.0.1:%d", smtpPort), api: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	var out bytes.Buffer
	cmd := exec.Command(bin, "--smtp", m.smtpAddr, "--listen", fmt.Sprintf("127.0.0.1:%d", httpPort), "--max", "0",
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure", "--disable-version-check", "--quiet")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mailpit: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(m.api + "/api/v1/messages")
		if err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", m.smtpAddr); err == nil {
				c.Close()
				if resp.StatusCode == http.StatusOK {
					return m
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit did not start: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitMessage waits for a message to rcpt and returns its text part.
func (m *mailpit) waitMessage(t *testing.T, rcpt string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var list struct {
			Messages []struct {
				ID string
				To []struct{ Address string }
			}
		}
		if getJSON(t, m.api+"/api/v1/messages", &list) {
			for _, msg := range list.Messages {
				for _, to := range msg.To {
					if strings.EqualFold(to.Address, rcpt) {
						var full struct{ Text string }
						if getJSON(t, m.api+"/api/v1/message/"+msg.ID, &full) {
							return full.Text
						}
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no email to %s reached Mailpit", rcpt)
	return ""
}

func getJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

func TestBrowserEmailJourney(t *testing.T) {
	mp := startMailpit(t)
	settings, err := email.ParseURL("smtp://" + mp.smtpAddr + "?tls=none")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := email.New(email.Config{Settings: settings, From: "crier <status@crier.example>", PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sender.Close() })
	b := setup(t, func(o *setupOptions) { o.senders = map[string]deliver.Sender{deliver.ChannelEmail: sender} })
	addr := "manager@oakview-care.example"
	b.secret(addr)
	ctx := browser(t)

	// Subscribe, on a phone-sized screen first for the screenshot.
	do(t, ctx, "open the subscribe page",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(b.url+"/subscribe"),
		chromedp.WaitVisible(chromedp.ID("email")),
	)
	if _, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.ID("phone"), chromedp.AtLeast(0))); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "subscribe-phone")
	do(t, ctx, "fill in the form",
		chromedp.EmulateViewport(1280, 900),
		chromedp.SendKeys(chromedp.ID("email"), addr),
		chromedp.Click(chromedp.CSS(`input[value="atlas-sync/sync-pod-a"]`)),
		chromedp.Click(chromedp.CSS(`input[value="emar"]`)),
	)
	screenshot(t, ctx, "subscribe-desktop")
	do(t, ctx, "submit", chromedp.Click(chromedp.ID("subscribe")), chromedp.WaitVisible(chromedp.ID("email-sent")))
	if got := text(t, ctx, "email-sent"); !strings.Contains(got, "m***@oakview-care.example") {
		t.Errorf("after subscribing: %q", got)
	}
	screenshot(t, ctx, "check-your-email")
	sub := findSubscriber(t, b, addr, "")
	if sub.EmailConfirmedAt != nil {
		t.Fatal("confirmed before the link was followed")
	}

	// Follow the link from the email that reached Mailpit.
	body := mp.waitMessage(t, addr)
	link := confirmLinkRe.FindString(body)
	if link == "" {
		t.Fatalf("no confirmation link in the email:\n%s", body)
	}
	b.secret(link[strings.LastIndexByte(link, '/')+1:])
	do(t, ctx, "open the confirmation link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("confirm")))
	screenshot(t, ctx, "confirm")
	do(t, ctx, "confirm", chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.ID("message")))
	if got := text(t, ctx, "message"); !strings.Contains(got, "confirmed") {
		t.Fatalf("after confirming: %q", got)
	}
	screenshot(t, ctx, "confirmed")
	if b.getSubscriber(t, sub.ID).EmailConfirmedAt == nil {
		t.Fatal("the address is not confirmed")
	}

	// The manage link: change the components.
	b.secret(b.manageToken(sub.ID))
	do(t, ctx, "open the manage page", chromedp.Click(chromedp.ID("next")), chromedp.WaitVisible(chromedp.ID("manage-form")))
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if loc != b.composer.ManageURL(sub.ID) {
		t.Errorf("manage page at %s, want compose.ManageURL %s", loc, b.composer.ManageURL(sub.ID))
	}
	screenshot(t, ctx, "manage")
	do(t, ctx, "change the components",
		chromedp.Click(chromedp.CSS(`input[value="atlas-sync/sync-pod-a"]`)),
		chromedp.Click(chromedp.CSS(`input[value="capa"]`)),
		chromedp.Click(chromedp.ID("save")),
		chromedp.WaitVisible(chromedp.ID("saved")),
	)
	screenshot(t, ctx, "manage-saved")
	if got := b.getSubscriber(t, sub.ID); strings.Join(got.Components, ",") != "capa,emar" || got.EmailOptedOutAt != nil {
		t.Fatalf("after saving: %+v", got)
	}

	// Unsubscribe with one click from the link of every email.
	unsub := b.composer.UnsubscribeURL(sub.ID, "email")
	b.secret(b.unsubscribeToken(sub.ID, "email"))
	do(t, ctx, "open the unsubscribe link", chromedp.Navigate(unsub), chromedp.WaitVisible(chromedp.ID("unsubscribe")))
	screenshot(t, ctx, "unsubscribe")
	do(t, ctx, "unsubscribe", chromedp.Click(chromedp.ID("unsubscribe")), chromedp.WaitVisible(chromedp.ID("message")))
	if got := text(t, ctx, "message"); !strings.Contains(got, "unsubscribed") {
		t.Fatalf("after unsubscribing: %q", got)
	}
	screenshot(t, ctx, "unsubscribed")
	if b.getSubscriber(t, sub.ID).EmailOptedOutAt == nil {
		t.Fatal("not opted out of email")
	}
}

var codeInText = regexp.MustCompile(`\b\d{6}\b`)

func TestBrowserSMSJourney(t *testing.T) {
	tw := twiliotest.New(t, twiliotest.ExampleAccountSID, twiliotest.ExampleAuthToken)
	sender, err := sms.New(sms.Config{
		AccountSID: twiliotest.ExampleAccountSID, AuthToken: twiliotest.ExampleAuthToken,
		From: "+447400000001", APIURL: tw.URL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sender.Close() })
	b := setup(t, func(o *setupOptions) { o.senders = map[string]deliver.Sender{deliver.ChannelSMS: sender} })
	num := "+447400123456"
	b.secret(num)
	ctx := browser(t)

	do(t, ctx, "fill in the form",
		chromedp.Navigate(b.url+"/subscribe"),
		chromedp.WaitVisible(chromedp.ID("phone")),
		chromedp.SendKeys(chromedp.ID("phone"), "07400 123456"),
		chromedp.Click(chromedp.CSS(`input[value="atlas-sync"]`)),
	)
	if n, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.ID("email"), chromedp.AtLeast(0))); err != nil || len(n) != 0 {
		t.Errorf("the email field is offered without an email sender (%v)", err)
	}
	screenshot(t, ctx, "subscribe-sms")
	do(t, ctx, "submit", chromedp.Click(chromedp.ID("subscribe")), chromedp.WaitVisible(chromedp.ID("code")))
	screenshot(t, ctx, "enter-code")

	msgs := tw.Messages()
	if len(msgs) != 1 || msgs[0].To != num || msgs[0].From != "+447400000001" {
		t.Fatalf("Twilio received %+v", msgs)
	}
	code := codeInText.FindString(msgs[0].Body)
	if code == "" {
		t.Fatalf("no code in %q", msgs[0].Body)
	}
	b.secret(code)
	wrong := fmt.Sprintf("%06d", (atoi(code)+1)%1000000)
	do(t, ctx, "enter a wrong code",
		chromedp.SendKeys(chromedp.ID("code"), wrong),
		chromedp.Click(chromedp.ID("verify")),
		chromedp.WaitVisible(chromedp.ID("code-error")),
	)
	screenshot(t, ctx, "wrong-code")
	do(t, ctx, "enter the code",
		chromedp.SendKeys(chromedp.ID("code"), code),
		chromedp.Click(chromedp.ID("verify")),
		chromedp.WaitVisible(chromedp.ID("message")),
	)
	if got := text(t, ctx, "message"); !strings.Contains(got, "confirmed") {
		t.Fatalf("after the code: %q", got)
	}
	screenshot(t, ctx, "number-confirmed")
	sub := findSubscriber(t, b, "", num)
	if sub.SMSConfirmedAt == nil || strings.Join(sub.Components, ",") != "atlas-sync" {
		t.Fatalf("after confirming: %+v", sub)
	}
	if len(tw.Messages()) != 1 {
		t.Errorf("%d texts sent, want only the code", len(tw.Messages()))
	}
}

func TestBrowserDashboard(t *testing.T) {
	b := setup(t)
	id, _ := ingestSeed(t, b)
	ctx := browser(t)
	do(t, ctx, "open the dashboard", chromedp.Navigate(b.url+"/admin"), chromedp.WaitVisible(chromedp.ID("token")))
	screenshot(t, ctx, "sign-in")
	do(t, ctx, "sign in with a wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "not-the-token-at-all"),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("token-error")),
	)
	do(t, ctx, "sign in",
		chromedp.SendKeys(chromedp.ID("token"), apiToken),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.CSS(".bar")),
	)
	screenshot(t, ctx, "dashboard")

	// The email bar of the first update: delivered, failed and superseded,
	// a third of the bar each.
	sel := `document.getElementById(` + jsString("event-"+id) + `).querySelectorAll('[data-channel="email"] .seg')`
	widths, err := chromedp.Run(ctx, chromedp.Evaluate[[]map[string]any](
		`Array.from(`+sel+`).map(s => ({state: s.dataset.state, w: s.getBoundingClientRect().width, bar: s.parentElement.getBoundingClientRect().width}))`))
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, w := range widths {
		states = append(states, w["state"].(string))
		share := w["w"].(float64) / w["bar"].(float64)
		if share < 0.30 || share > 0.37 {
			t.Errorf("segment %v is %.2f of the bar, want a third", w["state"], share)
		}
	}
	if strings.Join(states, ",") != "delivered,failed,superseded" {
		t.Errorf("email bar segments %v", states)
	}
	// The session cookie is out of the page's reach.
	if c, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`)); err != nil || c != "" {
		t.Errorf("document.cookie = %q (%v): the session cookie is not HttpOnly", c, err)
	}
	do(t, ctx, "sign out", chromedp.Click(chromedp.ID("sign-out")), chromedp.WaitVisible(chromedp.ID("token")))
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBrowserIncidentPage: from the dashboard, an incident's page lists
// every home told with whether it acknowledged, counts them over time,
// and filters to the homes that have not.
func TestBrowserIncidentPage(t *testing.T) {
	b := setup(t)
	bctx := context.Background()
	b.subscriber(t, store.NewSubscriber{Email: "manager@oakview.example", Components: []string{"atlas-sync"}, ConfirmEmail: true, Organisation: "Oakview"})
	b.subscriber(t, store.NewSubscriber{Email: "manager@hillcrest.example", Components: []string{"atlas-sync"}, ConfirmEmail: true, Organisation: "Hillcrest"})
	b.subscriber(t, store.NewSubscriber{Email: "solo@alone.example", Components: []string{"atlas-sync"}, ConfirmEmail: true})
	ev := incidenttest.Updates()[0]
	if _, err := b.store.Ingest(bctx, ev, incidenttest.Raw(ev), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Pool().Exec(bctx, `UPDATE deliveries SET state = 'delivered', sent_at = $2, next_attempt_at = NULL WHERE event_id = $1`, ev.ID, ev.OccurredAt.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.store.Acknowledge(bctx, store.Ack{IncidentID: ev.IncidentID, Home: "oakview", EventID: ev.ID, Via: "api", By: "Support desk"}); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	do(t, ctx, "sign in",
		chromedp.Navigate(b.url+"/admin"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), apiToken),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.CSS(".bar")),
	)
	do(t, ctx, "open the incident", chromedp.Click(chromedp.CSS(`#event-`+ev.ID+` h2 a`)), chromedp.WaitVisible(chromedp.ID("homes")))
	screenshot(t, ctx, "incident")
	count := func() string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("ack-count").textContent`))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(s)
	}
	rows := func() []string {
		ids, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#homes tbody tr[id]")).map(r => r.id + "=" + r.dataset.acknowledged)`))
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if c := count(); c != "1 of 3 homes acknowledged." {
		t.Errorf("count %q", c)
	}
	if got := strings.Join(rows(), ","); got != "home-hillcrest=false,home-oakview=true,home-subscriber-3=false" {
		t.Errorf("rows %s", got)
	}
	do(t, ctx, "show the homes that have not acknowledged", chromedp.Click(chromedp.ID("show-unacknowledged")), chromedp.WaitVisible(chromedp.ID("show-all")))
	if got := strings.Join(rows(), ","); got != "home-hillcrest=false,home-subscriber-3=false" {
		t.Errorf("not acknowledged: rows %s", got)
	}
	within, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(".ack-time td[data-count]")).map(c => c.dataset.count)`))
	if err != nil || len(within) == 0 {
		t.Fatalf("over time: %v %v", within, err)
	}
}
