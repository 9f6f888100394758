package faulttest

import (
	"context"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/testkit/twiliotest"
)

// Provider outage settings. The outage is the two minutes; the
// rest is shortened so the test waits for little else: the maximum age is
// below the outage so that the first event expires during it, and the
// retry schedule (CRIER_RETRY_BACKOFF doubling up to
// CRIER_RETRY_MAX_BACKOFF) is short so that the queue drains within seconds
// of the providers coming back. With the defaults (5s up to 10m) the last
// retries would come up to about three minutes after the outage.
const (
	providerOutage   = 2 * time.Minute
	outageMaxAge     = 90 * time.Second
	outageBackoff    = time.Second
	outageMaxBackoff = 10 * time.Second
)

// TestProviderOutage takes the SMTP server and the Twilio server down for
// two minutes. An event published as the outage starts is older than
// CRIER_MAX_AGE before it ends: its deliveries fail as expired and none
// arrives late. Events published during the outage are delivered exactly
// once after it, each on the first attempt the retry schedule allows once
// the providers are back.
func TestProviderOutage(t *testing.T) {
	t.Parallel() // mostly waiting: runs alongside the others (see heavy)
	w := newWorld(t, worldOptions{})
	early := w.addSubscribers(20, "capa")      // the event that expires
	middle := w.addSubscribers(20, "emar")     // published half way
	late := w.addSubscribers(20, "atlas-sync") // published shortly before the end

	w.sinks.smtp.SetDown(true)
	w.sinks.twilio.SetDown(twiliotest.DownHangUp)
	down := time.Now()
	p := w.start("crier", map[string]string{
		"CRIER_MAX_AGE":           outageMaxAge.String(),
		"CRIER_RETRY_BACKOFF":     outageBackoff.String(),
		"CRIER_RETRY_MAX_BACKOFF": outageMaxBackoff.String(),
		"CRIER_MAX_ATTEMPTS":      "100",
	})
	evEarly := newEvent("outage-early", "inc-outage-early", "capa")
	evMiddle := newEvent("outage-middle", "inc-outage-middle", "emar")
	evLate := newEvent("outage-late", "inc-outage-late", "atlas-sync/sync-pod-b")
	w.publish(evEarly)
	// The outage's timeline: these sleeps are the scenario's clock.
	time.Sleep(time.Until(down.Add(providerOutage / 2)))
	w.publish(evMiddle)
	time.Sleep(time.Until(down.Add(providerOutage - 10*time.Second)))
	w.publish(evLate)
	time.Sleep(time.Until(down.Add(providerOutage)))
	if st := w.states(evEarly.ID); st["email/failed"] != len(early) || st["sms/failed"] != len(early) {
		t.Errorf("when the providers come back, the early event's deliveries are %v; want all %d failed", st, 2*len(early))
	}
	w.sinks.smtp.SetDown(false)
	w.sinks.twilio.SetDown(twiliotest.Up)
	up := time.Now()
	t.Logf("providers down for %s", up.Sub(down).Round(time.Millisecond))

	w.waitSettled(outageMaxBackoff+30*time.Second, 2*(len(early)+len(middle)+len(late)), evEarly.ID, evMiddle.ID, evLate.ID)
	t.Logf("queue drained %s after the providers came back", time.Since(up).Round(time.Millisecond))
	if !p.running() {
		t.Fatal("crier exited")
	}

	// The early event expired: failed with error code expired, nothing
	// delivered late.
	if n := w.count(`SELECT count(*) FROM deliveries WHERE event_id = $1 AND state = 'failed' AND error_code = 'expired'`, evEarly.ID); n != 2*len(early) {
		t.Errorf("%d of the early event's %d deliveries failed as expired; states %v", n, 2*len(early), w.states(evEarly.ID))
	}
	if tl := w.sinks.tally(early, 0); tl.emails+tl.texts != 0 {
		t.Errorf("expired deliveries arrived late: %s", tl)
	}
	// The others: delivered once each, after the outage.
	for _, c := range []struct {
		name string
		subs []subscriber
		id   string
	}{{"middle", middle, evMiddle.ID}, {"late", late, evLate.ID}} {
		if st := w.states(c.id); st["email/sent"] != len(c.subs) || st["sms/sent"] != len(c.subs) {
			t.Errorf("%s event: deliveries %v, want all sent", c.name, st)
		}
		if tl := w.sinks.tally(c.subs, 1); tl.missingEmail+tl.missingSMS+tl.dups() != 0 {
			t.Errorf("%s event: %s; want each subscriber once per channel", c.name, tl)
		}
	}

	// Within the retry schedule: each delivery failed while the providers
	// were down, then succeeded at its first attempt after they came back,
	// which started no later than the longest backoff after the attempt
	// before it (plus the poll interval and scheduling slack).
	const slack = 3 * time.Second
	rows, err := w.st.Pool().Query(context.Background(), `
		SELECT d.id, d.event_id,
		       count(*) FILTER (WHERE a.outcome = 'sent'),
		       count(*) FILTER (WHERE a.outcome = 'retry'),
		       max(a.started_at) FILTER (WHERE a.outcome = 'sent'),
		       max(a.started_at) FILTER (WHERE a.outcome = 'retry')
		FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id
		WHERE d.event_id = ANY($1)
		GROUP BY d.id, d.event_id`, []string{evMiddle.ID, evLate.ID})
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var checked int
	var worst time.Duration
	for rows.Next() {
		var id int64
		var ev string
		var sent, retries int
		var sentAt, lastRetry *time.Time
		if err := rows.Scan(&id, &ev, &sent, &retries, &sentAt, &lastRetry); err != nil {
			t.Fatal(err)
		}
		checked++
		if sent != 1 || retries == 0 || sentAt == nil || lastRetry == nil {
			t.Errorf("delivery %d (%s): %d sent and %d retry attempts; want retries during the outage, then one send", id, ev, sent, retries)
			continue
		}
		if lastRetry.After(up) {
			// A retry that started after the providers came back must
			// have been in flight as they did.
			if lastRetry.Sub(up) > slack {
				t.Errorf("delivery %d (%s): an attempt %s after the providers came back failed", id, ev, lastRetry.Sub(up))
			}
		}
		gap := sentAt.Sub(*lastRetry)
		worst = max(worst, sentAt.Sub(up))
		if gap > outageMaxBackoff+slack {
			t.Errorf("delivery %d (%s): sent %s after the previous attempt, more than the longest backoff %s", id, ev, gap, outageMaxBackoff)
		}
		if sentAt.Before(up.Add(-slack)) {
			t.Errorf("delivery %d (%s): sent at %s, before the providers came back", id, ev, sentAt.Sub(up))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if checked != 2*(len(middle)+len(late)) {
		t.Errorf("checked the attempts of %d deliveries, want %d", checked, 2*(len(middle)+len(late)))
	}
	t.Logf("last delivery %s after the providers came back (longest backoff %s)", worst.Round(time.Millisecond), outageMaxBackoff)
}
