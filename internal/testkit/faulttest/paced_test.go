package faulttest

import (
	"testing"
	"time"
)

// TestPacedSendKeepsItsLeases paces both channels (CRIER_EMAIL_RATE,
// CRIER_SMS_RATE) with a short lease. Everything a process has claimed and
// not yet sent must go out before its lease expires, or the lease is reaped,
// the delivery claimed again and sent twice: every subscriber gets exactly
// one message per channel.
func TestPacedSendKeepsItsLeases(t *testing.T) {
	exclusive(t)
	const subscribers = 100
	w := newWorld(t, worldOptions{})
	subs := w.addSubscribers(subscribers, "capa")
	p := w.start("crier", map[string]string{"CRIER_EMAIL_RATE": "10", "CRIER_SMS_RATE": "10", "CRIER_LEASE": "4s"})
	ev := newEvent("paced-0001", "inc-paced", "capa")
	w.publish(ev)
	w.waitSettled(time.Minute, 2*subscribers, ev.ID)
	tl := w.sinks.tally(subs, 1)
	t.Logf("sinks: %s", tl)
	if tl.missingEmail+tl.missingSMS+tl.dups() != 0 {
		t.Errorf("a paced send with a 4s lease: %s; want everyone exactly once", tl)
	}
	if n := w.count(`SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent'`); n != 2*subscribers {
		t.Errorf("%d sent attempts recorded for %d deliveries", n, 2*subscribers)
	}
	if p.logs.Contains("expired leases requeued") {
		t.Error("the process's own leases expired while it held them")
	}
}

// TestSlowRateDoesNotTimeOutSends paces texts at one every two seconds, as a
// single long code may be. Senders waiting for the rate limiter must not run
// out of time (the send timeout includes the wait) and turn deliveries into
// retries that were never attempted.
func TestSlowRateDoesNotTimeOutSends(t *testing.T) {
	exclusive(t)
	w := newWorld(t, worldOptions{})
	w.addSubscribers(40, "capa")
	p := w.start("crier", map[string]string{"CRIER_SMS_RATE": "0.5"})
	ev := newEvent("slow-0001", "inc-slow", "capa")
	w.publish(ev)
	start := time.Now()
	waitFor(t, "the first texts", 30*time.Second, func() bool { return w.states(ev.ID)["sms/sent"] >= 2 })
	t.Logf("first texts after %s", time.Since(start).Round(time.Millisecond))
	// Long enough for a waiter beyond the send timeout to give up: it
	// gives up at once when the limiter says its turn is too far away.
	deadline := time.Now().Add(3 * time.Second)
	waitFor(t, "a few seconds of paced sending", 10*time.Second, func() bool { return time.Now().After(deadline) })
	if n := w.count(`SELECT count(*) FROM delivery_attempts WHERE outcome <> 'sent'`); n != 0 {
		var why string
		_ = w.st.Pool().QueryRow(t.Context(), `SELECT error FROM delivery_attempts WHERE outcome <> 'sent' LIMIT 1`).Scan(&why)
		t.Errorf("%d attempts failed while texts were merely waiting for their turn, e.g. %q", n, why)
	}
	p.kill() // the rest of the send would take 80 seconds
}
