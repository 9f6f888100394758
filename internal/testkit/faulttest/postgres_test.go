package faulttest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/event"
)

// pgOutage is how long crier's connections to PostgreSQL stay cut.
const pgOutage = 5 * time.Second

// TestPostgreSQLRestartMidRun cuts every connection between crier and
// PostgreSQL for a few seconds in the middle of a send (a tcpproxy stands
// in for the server restarting; the shared server itself is left alone),
// then lets them through again. While it is down the API answers 503 and
// /readyz says so; an event published to the stream meanwhile waits. When
// it is back, the same process recovers without a restart: the API accepts
// events again and every delivery is sent, none lost, and none doubled
// beyond those in flight when the connections were cut.
func TestPostgreSQLRestartMidRun(t *testing.T) {
	exclusive(t)
	const subscribers = 600
	w := newWorld(t, worldOptions{proxyDB: true})
	subs := w.addSubscribers(subscribers, "emar")
	p := w.start("crier", map[string]string{"CRIER_EMAIL_RATE": "300", "CRIER_SMS_RATE": "300"})

	evA := newEvent("pg-a", "inc-pg-a", "emar")
	evB := newEvent("pg-b", "inc-pg-b", "emar") // posted to the API during the outage, then again after
	evC := newEvent("pg-c", "inc-pg-c", "emar") // published to the stream during the outage
	w.publish(evA)
	waitFor(t, "the send to be under way", 60*time.Second, func() bool {
		st := w.states(evA.ID)
		return st["email/sent"] >= 100 && st["sms/sent"] >= 100
	})

	held := w.leased() // what is in flight as the connections are cut
	w.proxy.SetDown(true)
	down := time.Now()
	waitFor(t, "/readyz to report PostgreSQL down", 15*time.Second, func() bool {
		code, body := p.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "postgresql")
	})
	// The API needs the database to check an event's components, so it
	// answers 503; a 202 would be right too (JetStream stored it, the
	// fan-out waits for the database), and then the event must arrive.
	if code, body := p.postEvent(mustEncode(t, evB)); code != http.StatusServiceUnavailable && code != http.StatusAccepted {
		t.Errorf("POST /v1/events with the database down: %d %s, want 503 (or 202)", code, body)
	}
	if code, body := p.do(http.MethodGet, "/v1/events/"+evA.ID, "", nil, http.Header{"Authorization": {"Bearer " + apiToken}}); code != http.StatusServiceUnavailable {
		t.Errorf("GET /v1/events/{id} with the database down: %d %s, want 503", code, body)
	}
	w.publish(evC)
	// The outage itself.
	time.Sleep(time.Until(down.Add(pgOutage)))
	w.proxy.SetDown(false)
	t.Logf("PostgreSQL unreachable for %s with %d deliveries in flight", time.Since(down).Round(time.Millisecond), len(held))

	waitFor(t, "/readyz to recover without a restart", 30*time.Second, func() bool {
		code, _ := p.get("/readyz")
		return code == http.StatusOK
	})
	var code int
	var body string
	waitFor(t, "the API to accept the event again", 30*time.Second, func() bool {
		code, body = p.postEvent(mustEncode(t, evB))
		return code == http.StatusAccepted || code == http.StatusOK // 200: taken during the outage
	}, func() string { return body })

	w.waitSettled(2*time.Minute, 3*2*subscribers, evA.ID, evB.ID, evC.ID)
	if !p.running() {
		t.Fatal("crier exited")
	}
	got := w.states(evA.ID, evB.ID, evC.ID)
	if got["email/sent"] != 3*subscribers || got["sms/sent"] != 3*subscribers {
		t.Errorf("deliveries %v, want %d sent per channel", got, 3*subscribers)
	}
	tl := w.sinks.tally(subs, 3)
	t.Logf("sinks: %s; duplicates %d, in flight at the cut %d", tl, tl.dups(), len(held))
	if tl.missingEmail+tl.missingSMS != 0 {
		t.Errorf("deliveries lost: %s", tl)
	}
	if tl.dups() > len(held) {
		t.Errorf("%d duplicates, more than the %d deliveries in flight at the cut", tl.dups(), len(held))
	}
	if p.logs.Contains(`"level":"ERROR","msg":"record outcomes: giving up`) {
		t.Error("the worker gave up recording outcomes")
	}
}

func mustEncode(t *testing.T, ev event.Event) []byte {
	t.Helper()
	raw, err := event.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestSIGTERMWhilePostgreSQLIsDown stops `crier serve` while its database
// is unreachable and outcomes cannot be recorded: it must still exit 0
// within CRIER_SHUTDOWN_GRACE (what it could not record is sent again
// after the lease, at least once), and a process started when the
// database is back finishes the send.
func TestSIGTERMWhilePostgreSQLIsDown(t *testing.T) {
	exclusive(t)
	const (
		subscribers = 500
		grace       = 3 * time.Second
	)
	w := newWorld(t, worldOptions{proxyDB: true})
	subs := w.addSubscribers(subscribers, "capa")
	env := map[string]string{"CRIER_EMAIL_RATE": "200", "CRIER_SMS_RATE": "200", "CRIER_SHUTDOWN_GRACE": grace.String(), "CRIER_LEASE": "5s"}
	p := w.start("crier-1", env)
	ev := newEvent("pgterm-0001", "inc-pgterm", "capa")
	w.publish(ev)
	waitFor(t, "the send to be under way", 60*time.Second, func() bool {
		st := w.states(ev.ID)
		return st["email/sent"] >= 50 && st["sms/sent"] >= 50
	})
	held := w.leased()
	w.proxy.SetDown(true)
	code, took := p.term(grace + 30*time.Second)
	t.Logf("SIGTERM with the database down and %d deliveries leased: exit %d after %s", len(held), code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took > grace+2*time.Second {
		t.Errorf("took %s to exit, more than the grace period %s", took, grace)
	}
	w.proxy.SetDown(false)
	w.start("crier-2", env)
	w.waitSettled(time.Minute, 2*subscribers, ev.ID)
	tl := w.sinks.tally(subs, 1)
	t.Logf("sinks: %s; in flight at SIGTERM %d", tl, len(held))
	if tl.missingEmail+tl.missingSMS != 0 || tl.dups() > len(held) {
		t.Errorf("want everyone reached, duplicates at most the %d in flight: %s", len(held), tl)
	}
}
