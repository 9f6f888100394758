package httpapi_test

import (
	"context"
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
