package faulttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// seed returns the seed of the random fault moments: CRIER_FAULT_SEED when
// set (to replay a run), the clock otherwise. It is logged either way.
func seed(t *testing.T) *rand.Rand {
	t.Helper()
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("CRIER_FAULT_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CRIER_FAULT_SEED=%q: %v", v, err)
		}
		s = n
	}
	t.Logf("random seed %d (CRIER_FAULT_SEED=%d replays it)", s, s)
	return rand.New(rand.NewPCG(s, 0x5EED))
}

// leased returns the deliveries in state sending with their lease owner:
// after a kill, these are the ones the dead process held.
func (w *world) leased() map[string]bool {
	w.t.Helper()
	rows, err := w.st.Pool().Query(context.Background(),
		`SELECT id, coalesce(lease_owner, '') FROM deliveries WHERE state = 'sending'`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id int64
		var owner string
		if err := rows.Scan(&id, &owner); err != nil {
			w.t.Fatal(err)
		}
		out[fmt.Sprintf("%d/%s", id, owner)] = true
	}
	return out
}

// TestSIGKILLDuringFanoutAndSend kills `crier serve` with SIGKILL at random
// moments while it fans out and sends one event to 5,000 subscribers (both
// channels), restarting it each time, then lets a last process finish.
// Afterwards every subscriber has exactly one delivery row per channel, all
// sent; the sinks saw every (subscriber, channel) at least once; and the
// extra copies (sent by a process that died before recording the outcome,
// sent again once the lease expired) are at most what the dead processes
// held in flight.
func TestSIGKILLDuringFanoutAndSend(t *testing.T) {
	exclusive(t)
	const (
		subscribers = 5000
		kills       = 10
		lease       = 5 * time.Second
		rate        = 300 // per channel per process, so that the send outlasts the kills
		batch       = 200 // deliver.Config's default BatchSize
		workers     = 32  // CRIER_DELIVERY_WORKERS default; email uses min(32, 2*pool)
		pool        = 8   // CRIER_SMTP_POOL default
	)
	rng := seed(t)
	w := newWorld(t, worldOptions{})
	subs := w.addSubscribers(subscribers, "atlas-sync")
	env := map[string]string{
		"CRIER_LEASE":      lease.String(),
		"CRIER_EMAIL_RATE": strconv.Itoa(rate),
		"CRIER_SMS_RATE":   strconv.Itoa(rate),
	}
	ev := newEvent("kill-0001", "2025-11-10-atlas-sync", "atlas-sync/sync-pod-a")
	start := time.Now()

	heldAtKill := map[string]bool{} // (delivery, lease owner) pairs a killed process held
	for i := range kills {
		p := w.start(fmt.Sprintf("crier-%d", i), env)
		var delay time.Duration
		if i == 0 {
			// The first kill aims at the fan-out: the event row is
			// committed first, then the deliveries (10,000 rows), then
			// the event is marked fanned out. Kill a random moment
			// after the event row appears; the others aim at the
			// sending.
			w.publish(ev)
			for deadline := time.Now().Add(30 * time.Second); w.count(`SELECT count(*) FROM events WHERE id = $1`, ev.ID) == 0; {
				if time.Now().After(deadline) {
					t.Fatal("the event was not stored within 30s")
				}
				time.Sleep(2 * time.Millisecond) // the fan-out may take only a few hundred ms
			}
			delay = time.Duration(rng.Int64N(int64(100 * time.Millisecond)))
		} else {
			// A process killed during the fan-out leaves the event to
			// JetStream, which redelivers it after the consumer's
			// AckWait (30s): wait for it so that every later kill lands
			// in the sending.
			waitFor(t, "the event to be fanned out", 90*time.Second, func() bool {
				return w.fannedOut(ev.ID)
			})
			delay = 200*time.Millisecond + time.Duration(rng.Int64N(int64(1300*time.Millisecond)))
		}
		// The random moment of the fault: this sleep is the fault
		// injection itself, not a wait for something to happen.
		time.Sleep(delay)
		p.kill()
		if i == 0 {
			t.Logf("the first kill interrupted the fan-out: %v", !w.fannedOut(ev.ID))
		}
		held := w.leased()
		for k := range held {
			heldAtKill[k] = true
		}
		st := w.states(ev.ID)
		t.Logf("kill %d after %s: fanned out %v, sending %d (email %d, sms %d), sent email %d sms %d, sinks accepted %d",
			i, delay.Round(time.Millisecond), w.fannedOut(ev.ID),
			len(held), st["email/sending"], st["sms/sending"], st["email/sent"], st["sms/sent"], w.sinks.totalAccepted())

	}

	last := w.start("crier-final", env)
	w.waitSettled(3*time.Minute, 2*subscribers, ev.ID)
	if code, took := last.term(30 * time.Second); code != 0 {
		t.Errorf("final process exited %d after SIGTERM (%s)", code, took)
	}
	t.Logf("all %d deliveries settled %s after the event was published", 2*subscribers, time.Since(start).Round(time.Millisecond))

	got := w.states(ev.ID)
	if got["email/sent"] != subscribers || got["sms/sent"] != subscribers || len(got) != 2 {
		t.Errorf("delivery rows by state: %v; want %d sent per channel and nothing else", got, subscribers)
	}
	if n := w.count(`SELECT count(*) FROM (SELECT 1 FROM deliveries GROUP BY subscriber_id, channel HAVING count(*) > 1) x`); n != 0 {
		t.Errorf("%d (subscriber, channel) pairs have more than one delivery row", n)
	}
	if n := w.count(`SELECT count(DISTINCT delivery_id) FROM delivery_attempts WHERE outcome = 'sent'`); n != 2*subscribers {
		t.Errorf("%d deliveries have a sent attempt recorded, want %d", n, 2*subscribers)
	}

	tl := w.sinks.tally(subs, 1)
	inFlightCap := kills * ((min(workers, 2*pool) + batch) + (workers + batch))
	t.Logf("sinks: %s", tl)
	t.Logf("duplicates caused by expired leases: %d (email %d, sms %d); deliveries held by killed processes: %d; in-flight capacity over %d kills: %d",
		tl.dups(), tl.dupEmail, tl.dupSMS, len(heldAtKill), kills, inFlightCap)
	if tl.missingEmail+tl.missingSMS != 0 {
		t.Errorf("some subscribers were never reached: %s", tl)
	}
	if tl.dups() > len(heldAtKill) {
		t.Errorf("%d duplicates, more than the %d deliveries the killed processes held in flight", tl.dups(), len(heldAtKill))
	}
	if tl.dups() > inFlightCap {
		t.Errorf("%d duplicates, more than the in-flight capacity %d", tl.dups(), inFlightCap)
	}
}
