package faulttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/testkit/hooktest"
)

// TestDestinations: a subscriber with a webhook, a Teams and a Slack URL,
// created through the API, gets each update on all three: the webhook
// signed with the secret its creation answered (once), Teams an Adaptive
// Card, Slack Block Kit. A 410 Gone switches a destination off. URLs that
// are not https or that resolve to a private address not allowed by
// CRIER_WEBHOOK_ALLOW_PRIVATE are refused when saved.
func TestDestinations(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	hook, teams, slack := hooktest.New(t, hooktest.Webhook), hooktest.New(t, hooktest.Teams), hooktest.New(t, hooktest.Slack)
	cert := filepath.Join(t.TempDir(), "hooks.pem")
	if err := hook.CertificatePEM(cert); err != nil {
		t.Fatal(err)
	}
	var allow []string
	for _, s := range []*hooktest.Server{hook, teams, slack} {
		allow = append(allow, s.Listener.Addr().String())
	}
	p := w.start("crier", map[string]string{"CRIER_WEBHOOK_ALLOW_PRIVATE": strings.Join(allow, ","), "SSL_CERT_FILE": cert})
	auth := http.Header{"Authorization": {"Bearer " + apiToken}}
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		code, out := p.do(method, path, "application/json", strings.NewReader(body), auth)
		var m map[string]any
		_ = json.Unmarshal([]byte(out), &m)
		return code, m
	}

	// Refused destinations.
	for name, c := range map[string]struct{ field, url string }{
		"http":                 {"webhook_url", "http://" + allow[0] + "/hook"},
		"a private address":    {"teams_url", "https://10.1.2.3/hook"},
		"loopback, not listed": {"slack_url", "https://127.0.0.1:1/hook"},
		"metadata":             {"webhook_url", "https://169.254.169.254/latest/meta-data"},
		"a user in the URL":    {"webhook_url", "https://user:pw@" + allow[0] + "/hook"},
	} {
		code, m := call("POST", "/v1/subscribers", fmt.Sprintf(`{"%s": %q, "components": ["emar"]}`, c.field, c.url))
		if code != http.StatusUnprocessableEntity || m["field"] != c.field {
			t.Errorf("%s: %d %v, want 422 naming %s", name, code, m, c.field)
		}
	}

	code, m := call("POST", "/v1/subscribers", fmt.Sprintf(`{"name": "Oakview systems", "components": ["emar"],
		"webhook_url": %q, "teams_url": %q, "slack_url": %q}`, hook.URL+"/crier", teams.URL+"/workflows/abc", slack.URL+"/services/T0/B0/xyz"))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, m)
	}
	secret, _ := m["webhook_secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("create answered webhook_secret %q", secret)
	}
	if err := hook.SetSecret(secret); err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatFloat(m["id"].(float64), 'f', 0, 64)
	if code, got := call("GET", "/v1/subscribers/"+id, ""); code != 200 || got["webhook_secret"] != nil || got["teams_url"] != teams.URL+"/workflows/abc" {
		t.Errorf("GET after create: %d %v; want the URLs and no secret", code, got)
	}

	arrived := func(s *hooktest.Server, n int) func() bool {
		return func() bool { return len(s.Accepted()) >= n }
	}
	w.publish(newEvent("dest-0001", "inc-dest", "emar"))
	for name, s := range map[string]*hooktest.Server{"webhook": hook, "teams": teams, "slack": slack} {
		waitFor(t, name+" receives the update", 20*time.Second, arrived(s, 1))
		for _, r := range s.Requests() {
			if r.Problem != "" {
				t.Errorf("%s refused what crier sent: %s\n%s", name, r.Problem, r.Body)
			}
		}
	}
	var body struct {
		Event struct{ ID string }
	}
	if err := json.Unmarshal(hook.Accepted()[0].Body, &body); err != nil || body.Event.ID != "dest-0001" {
		t.Errorf("webhook body %s (%v)", hook.Accepted()[0].Body, err)
	}
	waitFor(t, "the three deliveries recorded as sent", 10*time.Second, func() bool {
		return w.count(`SELECT count(*) FROM deliveries WHERE event_id = 'dest-0001' AND state = 'sent'`) == 3
	})
	// The ledger shows the destinations without their secret paths.
	code, out := p.do("GET", "/v1/events/dest-0001/deliveries?channel=teams", "", nil, auth)
	if code != 200 || strings.Contains(out, "/workflows/abc") || !strings.Contains(out, "https://127.0.0.1") {
		t.Errorf("deliveries of teams: %d %s", code, out)
	}

	// Teams answers 410: the destination is switched off.
	teams.Answer("/workflows/abc", http.StatusGone)
	w.publish(newEvent("dest-0002", "inc-dest", "emar"))
	waitFor(t, "the 410 recorded", 20*time.Second, func() bool {
		return w.count(`SELECT count(*) FROM subscribers WHERE id = `+id+` AND teams_opted_out_at IS NOT NULL`) == 1
	})
	waitFor(t, "webhook and slack receive the second update", 20*time.Second, func() bool { return arrived(hook, 2)() && arrived(slack, 2)() })
	w.publish(newEvent("dest-0003", "inc-dest", "emar"))
	waitFor(t, "the third update on the webhook", 20*time.Second, arrived(hook, 3))
	if n := w.count(`SELECT count(*) FROM deliveries WHERE event_id = 'dest-0003' AND channel = 'teams'`); n != 0 {
		t.Errorf("%d Teams deliveries after the 410", n)
	}

	// A changed webhook URL gets a new secret, answered once.
	code, m = call("PATCH", "/v1/subscribers/"+id, fmt.Sprintf(`{"webhook_url": %q}`, hook.URL+"/crier/v2"))
	if s, _ := m["webhook_secret"].(string); code != 200 || !strings.HasPrefix(s, "whsec_") || s == secret {
		t.Errorf("PATCH webhook_url: %d, webhook_secret %q; want a new one", code, s)
	}
	if code, m = call("PATCH", "/v1/subscribers/"+id, `{"name": "Oakview"}`); code != 200 || m["webhook_secret"] != nil {
		t.Errorf("PATCH name: %d %v; want no secret", code, m)
	}
}
