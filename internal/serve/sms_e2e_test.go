package serve_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/serve"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/twiliotest"
)

const (
	numGroup     = "+447400100001" // atlas-sync; first request 429 with Retry-After
	numPodA      = "+447400100002" // pod A; first request 500
	numEmar      = "+447400100003" // emar
	numInvalid   = "+447400100004" // Twilio answers 21211
	numStopped   = "+447400100005" // Twilio answers 21610
	numUnconfirm = "+447400100006"
)

var smsSubscribers = []subscriber{
	{label: "group", NewSubscriber: store.NewSubscriber{Phone: numGroup, Components: []string{"atlas-sync"}, ConfirmSMS: true}},
	{label: "pod-a", NewSubscriber: store.NewSubscriber{Phone: numPodA, Components: []string{"atlas-sync/sync-pod-a"}, ConfirmSMS: true}},
	{label: "emar", NewSubscriber: store.NewSubscriber{Phone: numEmar, Components: []string{"emar"}, ConfirmSMS: true}},
	{label: "invalid", NewSubscriber: store.NewSubscriber{Phone: numInvalid, Components: []string{"atlas-sync"}, ConfirmSMS: true}},
	{label: "stopped", NewSubscriber: store.NewSubscriber{Phone: numStopped, Components: []string{"atlas-sync"}, ConfirmSMS: true}},
	{label: "unconfirmed", NewSubscriber: store.NewSubscriber{Phone: numUnconfirm, Components: []string{"atlas-sync", "emar"}}},
}

func startSMS(t *testing.T) (*crier, *twiliotest.Server) {
	t.Helper()
	tw := twiliotest.New(t, twiliotest.ExampleAccountSID, twiliotest.ExampleAuthToken)
	var mu sync.Mutex
	seen := map[string]int{}
	tw.SetHook(func(to string, _ int) *twiliotest.Fault {
		mu.Lock()
		seen[to]++
		n := seen[to]
		mu.Unlock()
		switch {
		case to == numGroup && n == 1:
			return twiliotest.RateLimited(time.Second)
		case to == numPodA && n == 1:
			return twiliotest.ServerError()
		case to == numInvalid:
			return twiliotest.InvalidNumber()
		case to == numStopped:
			return twiliotest.OptedOut()
		}
		return nil
	})
	c := start(t, map[string]string{
		"CRIER_TWILIO_ACCOUNT_SID": tw.AccountSID(),
		"CRIER_TWILIO_AUTH_TOKEN":  tw.AuthToken(),
		"CRIER_TWILIO_FROM":        "+447400999999",
		"CRIER_TWILIO_API_URL":     tw.URL(),
		"CRIER_SMS_RATE":           "0",
	}, smsSubscribers, serve.Options{})
	return c, tw
}

func TestIncidentTextsReachEachSubscriberOnceInOrder(t *testing.T) {
	t.Parallel()
	c, tw := startSMS(t)
	updates := incidenttest.Updates()
	for _, ev := range updates {
		c.publish(t, ev)
		c.waitSettled(t, ev.ID)
	}
	byTo := map[string][]twiliotest.Message{}
	for _, m := range tw.Messages() {
		byTo[m.To] = append(byTo[m.To], m)
	}
	want := map[string][]int{
		numGroup: {1, 2, 4, 5, 6, 7, 8},
		numPodA:  {1, 2, 4, 5, 6, 7, 8},
		numEmar:  {3, 8},
	}
	for to := range byTo {
		if _, ok := want[to]; !ok {
			t.Errorf("%s received %d texts, want none", to, len(byTo[to]))
		}
	}
	for to, idx := range want {
		got := byTo[to]
		if len(got) != len(idx) {
			t.Errorf("%s received %d texts, want %d", to, len(got), len(idx))
			continue
		}
		for i, n := range idx {
			ev := updates[n-1]
			if !strings.Contains(got[i].Body, ev.Title[:20]) || got[i].StatusCallback != c.baseURL+"/webhooks/twilio/status" {
				t.Errorf("%s text %d (update %d): body %q, callback %q", to, i, n, got[i].Body, got[i].StatusCallback)
			}
			if !strings.Contains(strings.ToUpper(got[i].Body), "STOP") {
				t.Errorf("%s text %d has no stop footer: %q", to, i, got[i].Body)
			}
			if got[i].NumSegments > 2 {
				t.Errorf("%s text %d takes %d segments", to, i, got[i].NumSegments)
			}
		}
	}
	ctx := context.Background()
	var code string
	var state string
	// 429 and 500 were retried: two attempts for the first text of each.
	for _, num := range []string{numGroup, numPodA} {
		var attempts int
		if err := c.store.Pool().QueryRow(ctx, `SELECT attempts, state FROM deliveries WHERE address = $1 AND event_id = $2`, num, updates[0].ID).Scan(&attempts, &state); err != nil {
			t.Fatal(err)
		}
		if attempts != 2 || state != "sent" {
			t.Errorf("%s first text: %d attempts, state %s; want 2 attempts then sent", num, attempts, state)
		}
	}
	if err := c.store.Pool().QueryRow(ctx, `SELECT error_code, state FROM deliveries WHERE address = $1 AND event_id = $2`, numInvalid, updates[0].ID).Scan(&code, &state); err != nil {
		t.Fatal(err)
	}
	if code != "21211" || state != "failed" {
		t.Errorf("invalid number: %s %s, want failed 21211", state, code)
	}
	// 21610 fails the text and opts the subscriber out of SMS: no later
	// update is queued for them.
	var optedOut bool
	var later int
	if err := c.store.Pool().QueryRow(ctx, `
		SELECT s.sms_opted_out_at IS NOT NULL,
		       (SELECT count(*) FROM deliveries d WHERE d.subscriber_id = s.id AND d.event_id <> $2)
		FROM subscribers s WHERE s.phone = $1`, numStopped, updates[0].ID).Scan(&optedOut, &later); err != nil {
		t.Fatal(err)
	}
	if !optedOut || later != 0 {
		t.Errorf("21610: opted out %t, %d later deliveries; want opted out and none", optedOut, later)
	}
}

func TestStatusCallbacksAreVerifiedAndNeverGoBack(t *testing.T) {
	t.Parallel()
	c, tw := startSMS(t)
	ev := incidenttest.Updates()[2] // emar, capa
	c.publish(t, ev)
	c.waitSettled(t, ev.ID)
	msgs := tw.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d texts, want 1", len(msgs))
	}
	sid := msgs[0].SID
	ctx := context.Background()
	stateOf := func() (string, string) {
		var state, code string
		if err := c.store.Pool().QueryRow(ctx, `SELECT state, coalesce(error_code, '') FROM deliveries WHERE provider_id = $1`, sid).Scan(&state, &code); err != nil {
			t.Fatal(err)
		}
		return state, code
	}
	post := func(form url.Values, sig string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/webhooks/twilio/status", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sig != "" {
			req.Header.Set("X-Twilio-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	url := c.baseURL + "/webhooks/twilio/status"
	undelivered := twiliotest.StatusUpdate{MessageSid: sid, MessageStatus: "undelivered", ErrorCode: 30003, To: numEmar}.Form()

	// Without a signature, or with one for other content: refused.
	if code := post(undelivered, ""); code != http.StatusForbidden {
		t.Errorf("unsigned callback: %d, want 403", code)
	}
	tampered := twiliotest.StatusUpdate{MessageSid: sid, MessageStatus: "delivered", To: numEmar}.Form()
	if code := post(undelivered, twiliotest.Signature(tw.AuthToken(), url, tampered)); code != http.StatusForbidden {
		t.Errorf("tampered callback: %d, want 403", code)
	}
	if code := post(undelivered, twiliotest.Signature("wrong-token", url, undelivered)); code != http.StatusForbidden {
		t.Errorf("callback signed with another token: %d, want 403", code)
	}
	if s, _ := stateOf(); s != "sent" {
		t.Fatalf("state after refused callbacks = %s, want sent", s)
	}
	// An unknown SID is ignored without changing anything.
	unknown := twiliotest.StatusUpdate{MessageSid: "SM00000000000000000000000000000000", MessageStatus: "delivered"}.Form()
	if code := post(unknown, twiliotest.Signature(tw.AuthToken(), url, unknown)); code/100 != 2 {
		t.Errorf("unknown SID: %d", code)
	}
	// Valid: delivered. Then a late "sent" and an "undelivered" change nothing.
	for _, status := range []string{"delivered", "sent", "undelivered", "delivered"} {
		resp, err := tw.ReportStatus(ctx, sid, status, 0)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("%s callback: %d", status, resp.StatusCode)
		}
		if s, _ := stateOf(); s != "delivered" {
			t.Errorf("after %s callback state = %s, want delivered", status, s)
		}
	}
}

func TestInboundStopStartHelp(t *testing.T) {
	t.Parallel()
	c, tw := startSMS(t)
	ctx := context.Background()
	// Every message Twilio forwards has its own MessageSid.
	sids := 0
	inbound := func(from, body string) (int, string) {
		sids++
		return postInbound(t, c.baseURL, tw, url.Values{"From": {from}, "To": {"+447400999999"}, "Body": {body},
			"MessageSid": {fmt.Sprintf("SM%032x", sids)}, "AccountSid": {tw.AccountSID()}})
	}
	optedOut := func() bool {
		var v bool
		if err := c.store.Pool().QueryRow(ctx, `SELECT sms_opted_out_at IS NOT NULL FROM subscribers WHERE phone = $1`, numEmar).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	// A text queued for the subscriber when STOP arrives is suppressed.
	if _, err := c.store.Pool().Exec(ctx, `UPDATE subscribers SET sms_confirmed_at = now() WHERE phone = $1`, numEmar); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"  stop ", "Stop", "STOPALL", "unsubscribe", "Cancel", "end", "QUIT", "s t o p"} {
		if code, _ := inbound(numEmar, "start"); code != 200 || optedOut() {
			t.Fatalf("START: %d, opted out %t", code, optedOut())
		}
		if code, _ := inbound(numEmar, body); code != 200 || !optedOut() {
			t.Errorf("%q: %d, opted out %t; want opted out", body, code, optedOut())
		}
	}
	// A text still queued when STOP arrives is suppressed, not sent.
	if code, _ := inbound(numEmar, "START"); code != 200 || optedOut() {
		t.Fatal("START did not opt in")
	}
	ev := incidenttest.Updates()[2]
	c.publish(t, ev)
	c.waitSettled(t, ev.ID)
	if _, err := c.store.Pool().Exec(ctx, `UPDATE deliveries SET state = 'queued', next_attempt_at = now() + interval '1 hour' WHERE address = $1`, numEmar); err != nil {
		t.Fatal(err)
	}
	inbound(numEmar, "STOP")
	var state string
	if err := c.store.Pool().QueryRow(ctx, `SELECT state FROM deliveries WHERE address = $1`, numEmar).Scan(&state); err != nil || state != "suppressed" {
		t.Errorf("queued text after STOP: %s (%v), want suppressed", state, err)
	}
	if code, _ := inbound(numEmar, "UNSTOP"); code != 200 || optedOut() {
		t.Errorf("UNSTOP: %d, opted out %t; want opted in", code, optedOut())
	}
	if code, body := inbound(numEmar, " help "); code != 200 || !strings.Contains(body, "<Message>") || !strings.Contains(body, "STOP") {
		t.Errorf("HELP: %d %q", code, body)
	}
	if code, _ := inbound(numEmar, "stopping by later"); code != 200 || optedOut() {
		t.Errorf("an ordinary message opted the sender out")
	}
}

// postInbound posts form, signed, to crier's inbound webhook as Twilio
// would.
func postInbound(t *testing.T, baseURL string, tw *twiliotest.Server, form url.Values) (int, string) {
	t.Helper()
	u := baseURL + "/webhooks/twilio/inbound"
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twiliotest.Signature(tw.AuthToken(), u, form))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReplayedWebhooksChangeNothing: a validly signed START captured and
// replayed after the subscriber texted STOP does not opt them in again,
// and a replayed 21610 report does not opt out a number that has texted
// START since.
func TestReplayedWebhooksChangeNothing(t *testing.T) {
	t.Parallel()
	c, tw := startSMS(t)
	ctx := context.Background()
	if _, err := c.store.Pool().Exec(ctx, `UPDATE subscribers SET sms_confirmed_at = now() WHERE phone = $1`, numEmar); err != nil {
		t.Fatal(err)
	}
	optedOut := func() bool {
		var v bool
		if err := c.store.Pool().QueryRow(ctx, `SELECT sms_opted_out_at IS NOT NULL FROM subscribers WHERE phone = $1`, numEmar).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	msg := func(sid, body string) url.Values {
		return url.Values{"From": {numEmar}, "To": {"+447400999999"}, "Body": {body}, "MessageSid": {sid}, "AccountSid": {tw.AccountSID()}}
	}
	start := msg("SM0000000000000000000000000000start", "START")
	stop := msg("SM00000000000000000000000000000stop", "STOP")
	for _, step := range []struct {
		name     string
		form     url.Values
		optedOut bool
	}{
		{"STOP", stop, true},
		{"START", start, false},
		{"STOP again, a new message", msg("SM000000000000000000000000000stop2", "STOP"), true},
		{"the first START replayed", start, true},
		{"the first STOP replayed after a new START", stop, false},
	} {
		if step.name == "the first STOP replayed after a new START" {
			if code, _ := postInbound(t, c.baseURL, tw, msg("SM00000000000000000000000000start2", "start")); code != 200 || optedOut() {
				t.Fatalf("a new START: %d, opted out %t", code, optedOut())
			}
		}
		if code, _ := postInbound(t, c.baseURL, tw, step.form); code != 200 || optedOut() != step.optedOut {
			t.Errorf("%s: %d, opted out %t; want %t", step.name, code, optedOut(), step.optedOut)
		}
	}
	if code, body := postInbound(t, c.baseURL, tw, url.Values{"From": {numEmar}, "Body": {"STOP"}}); code != http.StatusBadRequest || optedOut() {
		t.Errorf("an inbound text without a MessageSid: %d %q, opted out %t; want 400 and no change", code, body, optedOut())
	}

	// A 21610 report opts the number out; replayed after the recipient
	// texted START, it does not again.
	ev := incidenttest.Updates()[2] // emar, capa
	c.publish(t, ev)
	c.waitSettled(t, ev.ID)
	var sid string
	if err := c.store.Pool().QueryRow(ctx, `SELECT provider_id FROM deliveries WHERE event_id = $1 AND address = $2`, ev.ID, numEmar).Scan(&sid); err != nil {
		t.Fatal(err)
	}
	if _, err := c.store.Pool().Exec(ctx, `UPDATE deliveries SET state = 'sent' WHERE provider_id = $1`, sid); err != nil {
		t.Fatal(err)
	}
	report := func() {
		t.Helper()
		resp, err := tw.ReportStatus(ctx, sid, "undelivered", 21610)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("21610 report: %d", resp.StatusCode)
		}
	}
	report()
	if !optedOut() {
		t.Fatal("a 21610 report did not opt the number out")
	}
	if code, _ := postInbound(t, c.baseURL, tw, msg("SM00000000000000000000000000start3", "START")); code != 200 || optedOut() {
		t.Fatalf("START after 21610: %d, opted out %t", code, optedOut())
	}
	report()
	if optedOut() {
		t.Error("the 21610 report replayed after START opted the number out again")
	}
}

// TestStatusCallbackBeforeTheSendIsRecordedIsApplied: Twilio reports
// "delivered" before it answers the request that created the text, so the
// report arrives before crier knows the SID. It is kept and applied once
// the send is recorded: the text ends delivered, not sent.
func TestStatusCallbackBeforeTheSendIsRecordedIsApplied(t *testing.T) {
	t.Parallel()
	c, tw := startSMS(t)
	tw.SetReportFirst("delivered")
	ev := incidenttest.Updates()[2] // emar, capa
	c.publish(t, ev)
	c.waitSettled(t, ev.ID)
	ctx := context.Background()
	// Every text Twilio accepted (the others were refused: invalid, opted out).
	var accepted, delivered int
	waitFor(t, "the early reports applied", 10*time.Second, func() bool {
		if err := c.store.Pool().QueryRow(ctx, `
			SELECT count(*), count(*) FILTER (WHERE state = 'delivered') FROM deliveries
			WHERE event_id = $1 AND channel = 'sms' AND provider_id IS NOT NULL`, ev.ID).Scan(&accepted, &delivered); err != nil {
			t.Fatal(err)
		}
		return accepted > 0 && delivered == accepted
	})
	var kept int
	if err := c.store.Pool().QueryRow(ctx, `SELECT count(*) FROM provider_reports`).Scan(&kept); err != nil || kept != 0 {
		t.Errorf("%d reports still kept after their sends were recorded (%v)", kept, err)
	}
}

// TestAcknowledgeByTextReply: the first text of a major incident asks for
// a reply; "ok thanks" from the number acknowledges the incident for its
// home, once; a later OK has nothing waiting; a resolution does not ask.
func TestAcknowledgeByTextReply(t *testing.T) {
	t.Parallel()
	c, tw := startSMS(t)
	ctx := context.Background()
	updates := incidenttest.Updates()
	first := updates[0]
	if first.Impact != "major" && first.Impact != "critical" {
		t.Fatalf("the seed's first update is %s: this test needs one that asks for acknowledgement", first.Impact)
	}
	c.publish(t, first)
	c.waitSettled(t, first.ID)
	asked := 0
	for _, m := range tw.Messages() {
		if m.To == numGroup && strings.Contains(m.Body, "Reply OK to confirm you have seen this.") {
			asked++
		}
	}
	if asked != 1 {
		t.Fatalf("%d texts to the group number ask for an OK, want 1: %+v", asked, tw.Messages())
	}
	reply := func(body string, n int) string {
		t.Helper()
		code, out := postInbound(t, c.baseURL, tw, url.Values{"From": {numGroup}, "To": {"+447400999999"}, "Body": {body},
			"MessageSid": {fmt.Sprintf("SMack%029d", n)}, "AccountSid": {tw.AccountSID()}})
		if code != http.StatusOK {
			t.Fatalf("reply %q: %d %s", body, code, out)
		}
		return out
	}
	if out := reply("ok thanks, on paper now", 1); !strings.Contains(out, "marked as having seen this") {
		t.Errorf("OK answered %s", out)
	}
	var via, home, note string
	if err := c.store.Pool().QueryRow(ctx, `SELECT via, home, note FROM acknowledgements WHERE incident_id = $1`, first.IncidentID).Scan(&via, &home, &note); err != nil ||
		via != "sms" || !strings.HasPrefix(home, "subscriber:") || note != "ok thanks, on paper now" {
		t.Errorf("acknowledgement %q %q %q (%v)", via, home, note, err)
	}
	if out := reply("Yes", 2); !strings.Contains(out, "nothing waiting") {
		t.Errorf("a second OK answered %s", out)
	}
	if out := reply("what is this?", 3); !strings.Contains(out, "Reply OK") {
		t.Errorf("an ordinary text answered %s; want the help text", out)
	}
	resolved := updates[6]
	c.publish(t, resolved)
	c.waitSettled(t, resolved.ID)
	for _, m := range tw.Messages() {
		if strings.Contains(m.Body, resolved.Body) && strings.Contains(m.Body, "Reply OK") {
			t.Errorf("the resolution asks for an OK: %q", m.Body)
		}
	}
}
