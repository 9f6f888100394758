package faulttest

import (
	"fmt"
	"testing"
	"time"
)

// TestThreeProcessesShareOneEvent runs three `crier serve` processes on one
// database and stream, publishes one event to 1,500 subscribers, and checks
// that no message reaches a sink twice and that each process sent a share
// (its crier_deliveries_total{outcome="sent"}, scraped before it stops;
// the ledger clears lease owners when outcomes are recorded, so the
// processes' own counters attribute the work).
func TestThreeProcessesShareOneEvent(t *testing.T) {
	exclusive(t)
	const subscribers = 1500
	w := newWorld(t, worldOptions{})
	subs := w.addSubscribers(subscribers, "emar")
	// The deployment is paced so that no process can take the whole event
	// alone before the others claim: each claim takes at most one second's
	// worth of the shared bucket, and the processes' claims interleave.
	env := map[string]string{"CRIER_EMAIL_RATE": "150", "CRIER_SMS_RATE": "150"}
	procs := make([]*proc, 3)
	for i := range procs {
		procs[i] = w.start(fmt.Sprintf("crier-%d", i), env)
	}
	ev := newEvent("share-0001", "inc-share", "emar")
	start := time.Now()
	w.publish(ev)
	w.waitSettled(2*time.Minute, 2*subscribers, ev.ID)
	t.Logf("%d deliveries by 3 processes in %s", 2*subscribers, time.Since(start).Round(time.Millisecond))

	sent := map[string][]float64{}
	for _, ch := range []string{"email", "sms"} {
		total := 0.0
		for _, p := range procs {
			n, err := p.metric("crier_deliveries_total", `channel="`+ch+`"`, `outcome="sent"`)
			if err != nil {
				t.Fatal(err)
			}
			sent[ch] = append(sent[ch], n)
			total += n
		}
		t.Logf("%s sent per process: %v", ch, sent[ch])
		if total != subscribers {
			t.Errorf("%s: the processes sent %v in all, want %d", ch, total, subscribers)
		}
		for i, n := range sent[ch] {
			if n < subscribers/10 {
				t.Errorf("%s: process %d sent %v of %d, less than a tenth", ch, i, n, subscribers)
			}
		}
	}
	for _, p := range procs {
		if code, took := p.term(30 * time.Second); code != 0 {
			t.Errorf("%s exited %d after SIGTERM (%s)", p.name, code, took)
		}
	}
	tl := w.sinks.tally(subs, 1)
	t.Logf("sinks: %s", tl)
	if tl.missingEmail+tl.missingSMS+tl.dups() != 0 {
		t.Errorf("want every subscriber reached exactly once per channel: %s", tl)
	}
	if got := w.states(ev.ID); got["email/sent"] != subscribers || got["sms/sent"] != subscribers {
		t.Errorf("deliveries: %v", got)
	}
}
