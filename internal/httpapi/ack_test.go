package httpapi_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/token"
)

// TestAcknowledgeByLink: the link in a home's message shows the incident,
// its guidance and the components' actions; opening it (as a mail
// scanner does) records nothing; posting the form acknowledges for the
// whole home, so another contact's link shows it done; an invalid link is
// the same 404 as any.
func TestAcknowledgeByLink(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	sync, err := b.store.GetComponent(ctx, "atlas-sync")
	if err != nil {
		t.Fatal(err)
	}
	sync.Guidance, sync.Actions = "Switch devices to Sync Pod B.", []string{"Switched to Sync Pod B", "Using paper MAR charts"}
	if _, err := b.store.PutComponent(ctx, sync); err != nil {
		t.Fatal(err)
	}
	manager := b.subscriber(t, store.NewSubscriber{Email: "manager@oakview.example", Components: []string{"atlas-sync"}, ConfirmEmail: true, Organisation: "Oakview Care Home"})
	deputy := b.subscriber(t, store.NewSubscriber{Email: "deputy@oakview.example", Components: []string{"atlas-sync"}, ConfirmEmail: true, Organisation: "oakview-care-home"})
	ev := incidenttest.Updates()[0]
	if _, err := b.store.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil {
		t.Fatal(err)
	}
	link := func(sub int64) string {
		var id int64
		if err := b.store.Pool().QueryRow(ctx, `SELECT id FROM deliveries WHERE subscriber_id = $1 AND event_id = $2`, sub, ev.ID).Scan(&id); err != nil {
			t.Fatal(err)
		}
		tok := b.signer.Make(token.PurposeAck, id, 0)
		b.secret(tok)
		return "/ack/" + tok
	}
	acks := func() int {
		var n int
		if err := b.store.Pool().QueryRow(ctx, `SELECT count(*) FROM acknowledgements`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	path := link(manager)
	for range 3 { // a scanner, a preview, the person
		a := b.get(t, path)
		expectStatus(t, a, http.StatusOK)
		page := a.page()
		for _, want := range []string{ev.Title, "What to do now", "Switch devices to Sync Pod B.", `value="Using paper MAR charts"`, `id="ack-form"`} {
			if !strings.Contains(page, want) {
				t.Errorf("ack page lacks %q", want)
			}
		}
	}
	if n := acks(); n != 0 {
		t.Fatalf("GET recorded %d acknowledgements", n)
	}
	a := b.post(t, path, url.Values{"action": {"Using paper MAR charts"}, "by": {"Robin (manager)"}, "note": {"Paper charts out on every unit."}})
	expectStatus(t, a, http.StatusOK)
	if page := a.page(); !strings.Contains(page, `id="acknowledged"`) || !strings.Contains(page, "Robin (manager)") || strings.Contains(page, `id="ack-form"`) {
		t.Errorf("after acknowledging:\n%s", page)
	}
	got, err := b.store.Acknowledgement(ctx, ev.IncidentID, "oakview-care-home")
	if err != nil || got.Via != "link" || got.Action != "Using paper MAR charts" || got.Note != "Paper charts out on every unit." || got.SubscriberID != manager {
		t.Fatalf("recorded %+v (%v)", got, err)
	}
	// The deputy's own link shows the home covered.
	if page := b.get(t, link(deputy)).page(); !strings.Contains(page, `id="acknowledged"`) || strings.Contains(page, `id="ack-form"`) {
		t.Error("the deputy's link does not show the home's acknowledgement")
	}
	// Posting again, or from the deputy, changes nothing.
	expectStatus(t, b.post(t, link(deputy), url.Values{"action": {"Switched to Sync Pod B"}}), http.StatusOK)
	if again, _ := b.store.Acknowledgement(ctx, ev.IncidentID, "oakview-care-home"); again.SubscriberID != manager || again.Action != got.Action || acks() != 1 {
		t.Errorf("a second acknowledgement changed the first: %+v", again)
	}
	// A home of one acknowledges on its own, and an action the components
	// do not offer is not stored.
	solo := b.subscriber(t, store.NewSubscriber{Email: "solo@alone.example", Components: []string{"atlas-sync"}, ConfirmEmail: true})
	if _, err := b.store.Pool().Exec(ctx, `
		INSERT INTO deliveries (event_id, incident_id, occurred_at, subscriber_id, channel, address, state, next_attempt_at)
		VALUES ($1, $2, $3, $4, 'email', 'solo@alone.example', 'queued', now())`, ev.ID, ev.IncidentID, ev.OccurredAt, solo); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, b.post(t, link(solo), url.Values{"action": {"Rebooted the server"}}), http.StatusOK)
	if s, err := b.store.Acknowledgement(ctx, ev.IncidentID, store.Home("", solo)); err != nil || s.Action != "" {
		t.Errorf("the home of one: %+v (%v)", s, err)
	}
	for _, bad := range []string{"/ack/nope", "/ack/" + b.signer.Make(token.PurposeManage, manager, 0), "/ack/" + b.signer.Make(token.PurposeAck, 999999, 0)} {
		expectStatus(t, b.get(t, bad), http.StatusNotFound)
	}
}

// TestAcknowledgeByAPI: the support desk records a home's acknowledgement
// given by phone; the first one counts.
func TestAcknowledgeByAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ev := incidenttest.Updates()[0]
	if _, err := b.store.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, b.call(t, "POST", "/v1/organisations", `{"key": "hillcrest", "name": "Hillcrest"}`), http.StatusCreated)
	path := "/v1/incidents/" + ev.IncidentID + "/acknowledgements"
	a := b.call(t, "POST", path, `{"organisation": "hillcrest", "by": "Support desk for Pat", "note": "Phoned at 13:50; on paper charts."}`)
	expectStatus(t, a, http.StatusCreated)
	if m := a.json(t); m["via"] != "api" || m["home"] != "hillcrest" || m["event_id"] != ev.ID {
		t.Errorf("recorded %s", a.body)
	}
	a = b.call(t, "POST", path, `{"organisation": "hillcrest", "by": "someone else"}`)
	expectStatus(t, a, http.StatusOK)
	if m := a.json(t); m["by"] != "Support desk for Pat" {
		t.Errorf("a second acknowledgement answered %s", a.body)
	}
	expectError(t, b.call(t, "POST", path, `{"organisation": "nowhere"}`), http.StatusUnprocessableEntity, "organisation")
	expectError(t, b.call(t, "POST", path, `{}`), http.StatusUnprocessableEntity, "organisation")
	expectError(t, b.call(t, "POST", "/v1/incidents/no-such-incident/acknowledgements", `{"organisation": "hillcrest"}`), http.StatusNotFound, "")
}

// TestIncidentEvidence: the summary counts the homes told and
// acknowledged; the per-home report says when each was first told, on
// which channels, what was delivered (masked) and how it acknowledged, as
// JSON and as CSV (formula cells neutralised).
func TestIncidentEvidence(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	manager := b.subscriber(t, store.NewSubscriber{Email: "manager@oakview.example", Components: []string{"atlas-sync"}, ConfirmEmail: true, Organisation: "Oakview"})
	b.subscriber(t, store.NewSubscriber{Phone: "+447400123459", Components: []string{"atlas-sync"}, ConfirmSMS: true, Organisation: "oakview", Role: "escalation"})
	solo := b.subscriber(t, store.NewSubscriber{Email: "solo@alone.example", Components: []string{"atlas-sync"}, ConfirmEmail: true})
	b.secret("manager@oakview.example", "+447400123459", "solo@alone.example")
	ev := incidenttest.Updates()[0]
	if _, err := b.store.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Pool().Exec(ctx, `
		UPDATE deliveries SET state = CASE WHEN subscriber_id = $1 THEN 'delivered' ELSE 'failed' END,
		       sent_at = CASE WHEN subscriber_id = $1 THEN '2025-11-10T13:36:00Z'::timestamptz END, next_attempt_at = NULL
		WHERE event_id = $2 AND subscriber_id IN ($1, $3)`, manager, ev.ID, solo); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, b.call(t, "POST", "/v1/incidents/"+ev.IncidentID+"/acknowledgements", `{"organisation": "oakview", "by": "Support desk", "note": "=HYPERLINK(\"https://evil.example\")"}`), http.StatusCreated)

	a := b.call(t, "GET", "/v1/incidents/"+ev.IncidentID, "")
	expectStatus(t, a, http.StatusOK)
	if m := a.json(t); m["homes"] != 2.0 || m["acknowledged"] != 1.0 || m["updates"] != 1.0 || m["title"] != ev.Title {
		t.Errorf("summary %s", a.body)
	}
	a = b.call(t, "GET", "/v1/incidents/"+ev.IncidentID+"/organisations", "")
	expectStatus(t, a, http.StatusOK)
	var rep struct {
		Organisations []struct {
			Home, Name      string
			FirstToldAt     *string `json:"first_told_at"`
			Channels        []string
			Deliveries      []struct{ Channel, Address, State string }
			Acknowledgement *struct{ Via, By string }
		}
	}
	if err := json.Unmarshal(a.body, &rep); err != nil || len(rep.Organisations) != 2 {
		t.Fatalf("report %s (%v)", a.body, err)
	}
	// The escalation contact is not told at fan-out: only by escalation.
	oak, one := rep.Organisations[0], rep.Organisations[1]
	if oak.Home != "oakview" || oak.Name != "Oakview" || oak.FirstToldAt == nil || !strings.HasPrefix(*oak.FirstToldAt, "2025-11-10T13:36:00") ||
		len(oak.Channels) != 1 || oak.Channels[0] != "email" || len(oak.Deliveries) != 1 || oak.Acknowledgement == nil || oak.Acknowledgement.Via != "api" {
		t.Errorf("Oakview: %+v", oak)
	}
	if one.Home != store.Home("", solo) || one.FirstToldAt != nil || one.Acknowledgement != nil || one.Deliveries[0].State != "failed" {
		t.Errorf("the home of one: %+v", one)
	}
	if strings.Contains(string(a.body), "manager@oakview.example") || strings.Contains(string(a.body), "7400123459") {
		t.Error("the report shows an address in full")
	}
	a = b.request(t, "GET", "/v1/incidents/"+ev.IncidentID+"/organisations", nil, "Authorization", "Bearer "+apiToken, "Accept", "text/csv")
	expectStatus(t, a, http.StatusOK)
	recs, err := csv.NewReader(strings.NewReader(string(a.body))).ReadAll()
	if err != nil || len(recs) != 3 || recs[0][0] != "home" || recs[1][0] != "oakview" || recs[1][4] != "1" || recs[1][5] != "0" || recs[2][5] != "1" {
		t.Fatalf("CSV %q (%v)", recs, err)
	}
	if note := recs[1][10]; note != `'=HYPERLINK("https://evil.example")` {
		t.Errorf("CSV note %q: not neutralised", note)
	}
	expectError(t, b.call(t, "GET", "/v1/incidents/nope/organisations", ""), http.StatusNotFound, "")
}
