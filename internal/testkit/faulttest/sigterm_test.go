package faulttest

import (
	"testing"
	"time"
)

// TestSIGTERMDuringLargeSend sends SIGTERM to `crier serve` in the middle of
// a large send. It stops claiming, finishes the sends in flight, releases
// what it claimed but did not start, records every outcome and exits 0
// within CRIER_SHUTDOWN_GRACE, leaving no delivery leased; a restarted
// process sends the rest, and nobody gets a message twice.
func TestSIGTERMDuringLargeSend(t *testing.T) {
	exclusive(t)
	const (
		subscribers = 2000
		grace       = 10 * time.Second
	)
	w := newWorld(t, worldOptions{})
	subs := w.addSubscribers(subscribers, "atlas-sync")
	env := map[string]string{
		"CRIER_EMAIL_RATE":     "300",
		"CRIER_SMS_RATE":       "300",
		"CRIER_SHUTDOWN_GRACE": grace.String(),
	}
	p := w.start("crier-1", env)
	ev := newEvent("term-0001", "inc-term", "atlas-sync")
	w.publish(ev)
	waitFor(t, "the send to be under way", time.Minute, func() bool {
		st := w.states(ev.ID)
		return st["email/sent"] >= 300 && st["sms/sent"] >= 300 && st["email/queued"] > 0 && st["sms/queued"] > 0
	})
	before := w.states(ev.ID)
	code, took := p.term(grace + 10*time.Second)
	after := w.states(ev.ID)
	t.Logf("SIGTERM with %d email and %d sms deliveries leased: exit %d after %s; then %v",
		before["email/sending"], before["sms/sending"], code, took.Round(time.Millisecond), after)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if took > grace+2*time.Second {
		t.Errorf("took %s to exit, more than the grace period %s", took, grace)
	}
	if !p.logs.Contains("stopped cleanly") {
		t.Error(`no "stopped cleanly" in the log`)
	}
	if n := after["email/sending"] + after["sms/sending"]; n != 0 {
		t.Errorf("%d deliveries still leased after a clean shutdown", n)
	}
	if after["email/queued"]+after["sms/queued"] == 0 {
		t.Fatal("the send finished before SIGTERM: the test proves nothing")
	}

	w.start("crier-2", env)
	w.waitSettled(2*time.Minute, 2*subscribers, ev.ID)
	if got := w.states(ev.ID); got["email/sent"] != subscribers || got["sms/sent"] != subscribers {
		t.Errorf("deliveries %v", got)
	}
	tl := w.sinks.tally(subs, 1)
	t.Logf("sinks: %s", tl)
	if tl.missingEmail+tl.missingSMS+tl.dups() != 0 {
		t.Errorf("after a clean shutdown and a restart, want everyone reached exactly once: %s", tl)
	}
}

// TestSIGTERMWithStuckProviders sends SIGTERM while every send hangs (the
// SMTP server holds its replies, Twilio answers after a minute): the
// process still exits 0 when CRIER_SHUTDOWN_GRACE runs out, and a process
// started later sends everything once the leases expire.
func TestSIGTERMWithStuckProviders(t *testing.T) {
	exclusive(t)
	const (
		subscribers = 200
		grace       = 3 * time.Second
		lease       = 3 * time.Second
	)
	w := newWorld(t, worldOptions{})
	subs := w.addSubscribers(subscribers, "capa")
	env := map[string]string{"CRIER_SHUTDOWN_GRACE": grace.String(), "CRIER_LEASE": lease.String()}
	w.sinks.smtp.Block()
	w.sinks.twilio.SetLatency(time.Minute)
	p := w.start("crier-1", env)
	ev := newEvent("stuck-0001", "inc-stuck", "capa")
	w.publish(ev)
	waitFor(t, "sends to hang", 30*time.Second, func() bool {
		st := w.states(ev.ID)
		return st["email/sending"] > 0 && st["sms/sending"] > 0
	})
	held := w.leased()
	code, took := p.term(grace + 15*time.Second)
	t.Logf("SIGTERM with %d deliveries leased: exit %d after %s", len(held), code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if took > grace+2*time.Second {
		t.Errorf("took %s to exit, more than the grace period %s", took, grace)
	}
	if !p.logs.Contains("grace period over") {
		t.Error(`no "grace period over" in the log`)
	}

	w.sinks.smtp.Release()
	w.sinks.twilio.SetLatency(0)
	w.start("crier-2", env)
	w.waitSettled(time.Minute, 2*subscribers, ev.ID)
	if got := w.states(ev.ID); got["email/sent"] != subscribers || got["sms/sent"] != subscribers {
		t.Errorf("deliveries %v", got)
	}
	tl := w.sinks.tally(subs, 1)
	t.Logf("sinks: %s; in flight at SIGTERM %d", tl, len(held))
	if tl.missingEmail+tl.missingSMS != 0 || tl.dups() > len(held) {
		t.Errorf("want everyone reached, duplicates at most the %d in flight: %s", len(held), tl)
	}
}
