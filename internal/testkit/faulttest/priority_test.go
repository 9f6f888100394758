package faulttest

import (
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/event"
)

// TestCriticalGoesFirstThroughAPacedBacklog: with the relay paced at 50
// emails a second and busy with a maintenance notice to 600 homes (12 s of
// backlog), eMar goes down (impact critical, 5 subscribers). The 5 critical
// emails must reach the relay within 2 s of the publish, before the rest of
// the maintenance backlog, which still all arrives.
func TestCriticalGoesFirstThroughAPacedBacklog(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	bulk := w.addSubscribers(600, "capa")
	homes := w.addSubscribers(5, "emar")
	w.start("crier", map[string]string{"CRIER_EMAIL_RATE": "50", "CRIER_SMS_RATE": "0"})
	maint := event.Event{
		ID: "maint-capa-1", IncidentID: "maint-capa", Kind: event.KindMaintenance, Status: "scheduled", Impact: "none",
		Title: "CAPA upgrade tonight", Body: "CAPA is upgraded from 22:00.", Components: []string{"capa"},
		OccurredAt: time.Now().UTC().Add(-time.Minute).Truncate(time.Second), Notify: true,
		ScheduledFor: ptr(time.Now().Add(time.Hour).UTC().Truncate(time.Second)), ScheduledUntil: ptr(time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)),
	}
	w.publish(maint)
	waitFor(t, "the backlog to be sending", 30*time.Second, func() bool { return w.states(maint.ID)["email/sent"] >= 50 })
	crit := newEvent("emar-down-1", "inc-emar-down", "emar")
	crit.Impact, crit.Title = "critical", "eMar unavailable"
	published := time.Now()
	w.publish(crit)
	waitFor(t, "the critical emails", 30*time.Second, func() bool {
		for _, h := range homes {
			if _, ok := w.sinks.arrivedAt(h.email); !ok {
				return false
			}
		}
		return true
	})
	var slowest time.Duration
	for _, h := range homes {
		at, _ := w.sinks.arrivedAt(h.email)
		slowest = max(slowest, at.Sub(published))
	}
	queued := w.states(maint.ID)["email/queued"]
	t.Logf("the 5 critical emails arrived within %s of the publish; %d maintenance emails still queued then", slowest.Round(time.Millisecond), queued)
	if slowest > 2*time.Second {
		t.Errorf("the last critical email arrived %s after the publish, want within 2s", slowest.Round(time.Millisecond))
	}
	if queued < 100 {
		t.Errorf("only %d maintenance emails were still queued: the test no longer has a backlog to jump", queued)
	}
	w.waitSettled(2*time.Minute, 2*len(bulk)+2*len(homes))
	if tl := w.sinks.tally(bulk, 1); tl.missingEmail != 0 || tl.dupEmail != 0 {
		t.Errorf("maintenance notice: %s", tl)
	}
}

func ptr[T any](v T) *T { return &v }
