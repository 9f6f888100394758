package faulttest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEscalationAcrossARestart: a home that has not acknowledged a major
// incident's first update within CRIER_ESCALATE_AFTER has its escalation
// contact told, once, even when the process that fanned the update out
// was killed in between and two processes look for due steps; a home that
// acknowledged in time is not escalated; and the resolution needs none.
func TestEscalationAcrossARestart(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	ctx := context.Background()
	env := map[string]string{"CRIER_ESCALATE_AFTER": "major=3s,critical=3s"}
	p := w.start("crier-a", env)
	auth := http.Header{"Authorization": {"Bearer " + apiToken}}
	post := func(path, body string) {
		t.Helper()
		if code, out := p.do(http.MethodPost, path, "application/json", strings.NewReader(body), auth); code/100 != 2 {
			t.Fatalf("POST %s: %d %s", path, code, out)
		}
	}
	for _, s := range []string{
		`{"email": "manager@oakview.example", "components": ["emar"], "organisation": "Oakview", "confirmed": true}`,
		`{"email": "owner@oakview.example", "components": ["emar"], "organisation": "oakview", "role": "escalation", "confirmed": true}`,
		`{"email": "manager@hillcrest.example", "components": ["emar"], "organisation": "Hillcrest", "confirmed": true}`,
		`{"email": "owner@hillcrest.example", "components": ["emar"], "organisation": "hillcrest", "role": "escalation", "confirmed": true}`,
	} {
		post("/v1/subscribers", s)
	}
	ev := newEvent("esc-0001", "inc-esc", "emar")
	ev.Impact = "major"
	w.publish(ev)
	delivered := func(addr string) int {
		return w.count(`SELECT count(*) FROM deliveries WHERE address = $1 AND state IN ('sent', 'delivered')`, addr)
	}
	waitFor(t, "both managers told", 20*time.Second, func() bool {
		return delivered("manager@oakview.example") == 1 && delivered("manager@hillcrest.example") == 1
	})
	if n := w.count(`SELECT count(*) FROM deliveries WHERE address LIKE 'owner@%'`); n != 0 {
		t.Fatalf("%d deliveries to escalation contacts at fan-out", n)
	}
	// Hillcrest acknowledges in time; then the process dies before the
	// steps are due, and two others take over.
	post("/v1/incidents/inc-esc/acknowledgements", `{"organisation": "hillcrest", "by": "Support desk"}`)
	p.kill()
	w.start("crier-b", env)
	w.start("crier-c", env)
	waitFor(t, "the Oakview owner told by escalation", 30*time.Second, func() bool { return delivered("owner@oakview.example") == 1 })
	time.Sleep(2 * time.Second) // time for a second process to escalate again, if it would
	if n := w.count(`SELECT count(*) FROM deliveries WHERE address = 'owner@oakview.example'`); n != 1 {
		t.Errorf("%d deliveries to the Oakview owner, want 1", n)
	}
	if n := w.count(`SELECT count(*) FROM deliveries WHERE address = 'owner@hillcrest.example'`); n != 0 {
		t.Errorf("Hillcrest acknowledged in time, yet its owner got %d deliveries", n)
	}
	var states string
	if err := w.st.Pool().QueryRow(ctx, `SELECT string_agg(home || '=' || state, ',' ORDER BY home) FROM escalations WHERE incident_id = 'inc-esc'`).Scan(&states); err != nil ||
		states != "hillcrest=skipped,oakview=done" {
		t.Errorf("escalations %q (%v)", states, err)
	}
	if n := w.count(`SELECT count(*) FROM deliveries WHERE address = 'owner@oakview.example' AND escalation_step = 1`); n != 1 {
		t.Error("the escalation delivery is not marked with its step")
	}

	// An incident resolved before its steps are due escalates nobody.
	ev2 := newEvent("esc-0002", "inc-esc-2", "emar")
	ev2.Impact = "major"
	w.publish(ev2)
	waitFor(t, "the second incident's steps scheduled", 20*time.Second, func() bool {
		return w.count(`SELECT count(*) FROM escalations WHERE incident_id = 'inc-esc-2'`) == 2
	})
	res := newEvent("esc-0003", "inc-esc-2", "emar")
	res.Impact, res.Status, res.OccurredAt = "major", "resolved", ev2.OccurredAt.Add(time.Minute)
	w.publish(res)
	waitFor(t, "the steps skipped", 20*time.Second, func() bool {
		return w.count(`SELECT count(*) FROM escalations WHERE incident_id = 'inc-esc-2' AND state = 'skipped'`) == 2
	})
	time.Sleep(4 * time.Second) // past the due time
	if n := w.count(`SELECT count(*) FROM deliveries WHERE incident_id = 'inc-esc-2' AND escalation_step IS NOT NULL`); n != 0 {
		t.Errorf("a resolved incident escalated: %d deliveries", n)
	}
}
