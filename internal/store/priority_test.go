package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func ingestEvent(t *testing.T, st *store.Store, ev event.Event) {
	t.Helper()
	if _, err := st.Ingest(context.Background(), ev, incidenttest.Raw(ev), 0); err != nil {
		t.Fatalf("ingest %s: %v", ev.ID, err)
	}
}

// storesOn opens n stores on the database at url, as n processes would.
func storesOn(t *testing.T, url string, n int) []*store.Store {
	t.Helper()
	out := make([]*store.Store, n)
	for i := range out {
		st, err := store.Open(context.Background(), url, 4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		out[i] = st
	}
	return out
}

// TestClaimTakesTheHighestPriorityFirst: a critical update fanned out after
// a large maintenance notice is claimed before any of it, then the major
// one, and the maintenance notice last, each in queue order.
func TestClaimTakesTheHighestPriorityFirst(t *testing.T) {
	t.Parallel()
	st := pgtest.NewStore(t)
	loadSubscribers(t, st, 300)
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	maint := event.Event{ID: "m-1", IncidentID: "maint-1", Kind: event.KindMaintenance, Status: "scheduled", Impact: "none",
		Title: "CAPA upgrade", Body: "Planned.", Components: []string{"atlas-sync"}, OccurredAt: at, Notify: true}
	major := event.Event{ID: "a-1", IncidentID: "inc-a", Kind: event.KindIncident, Status: "investigating", Impact: "major",
		Title: "Sync slow", Body: "Slow.", Components: []string{"atlas-sync"}, OccurredAt: at, Notify: true}
	crit := major
	crit.ID, crit.IncidentID, crit.Impact, crit.Title = "c-1", "inc-c", "critical", "Sync down"
	for _, ev := range []event.Event{maint, major, crit} {
		ingestEvent(t, st, ev)
	}
	var got []store.Claimed
	for {
		batch, err := st.Claim(context.Background(), "email", 70, "w", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		got = append(got, batch...)
	}
	if len(got) != 900 {
		t.Fatalf("claimed %d, want 900", len(got))
	}
	want := []struct {
		event string
		prio  int
	}{{"c-1", event.PriorityCritical}, {"a-1", event.PriorityMajor}, {"m-1", event.PriorityRoutine}}
	for i, c := range got {
		w := want[i/300]
		if c.EventID != w.event || c.Priority != w.prio {
			t.Fatalf("claim %d: event %s priority %d, want %s priority %d", i, c.EventID, c.Priority, w.event, w.prio)
		}
		if i%300 > 0 && c.ID < got[i-1].ID {
			t.Fatalf("claim %d: delivery %d after %d: not FIFO within its priority", i, c.ID, got[i-1].ID)
		}
	}
}

// TestResolutionRanksWithItsIncident: the resolution of an incident that
// was major, even though its last updates were minor and it carries impact
// none, is queued at major priority; a maintenance event never ranks above
// routine.
func TestResolutionRanksWithItsIncident(t *testing.T) {
	t.Parallel()
	st := pgtest.NewStore(t)
	loadSubscribers(t, st, 3)
	updates := incidenttest.Updates()
	for _, ev := range updates[:7] { // up to "resolved", impact none
		ingestEvent(t, st, ev)
	}
	prio := func(id string) int {
		t.Helper()
		var p int
		if err := st.Pool().QueryRow(context.Background(), `SELECT max(priority) FROM deliveries WHERE event_id = $1`, id).Scan(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := prio(updates[5].ID); p != event.PriorityMinor {
		t.Errorf("a minor update has priority %d, want %d", p, event.PriorityMinor)
	}
	if p := prio(updates[6].ID); p != event.PriorityMajor {
		t.Errorf("the resolution of a major incident has priority %d, want %d", p, event.PriorityMajor)
	}
}

// TestPacedClaimsHoldTheRateAcrossStores: two stores (two processes' pools)
// claiming one channel as fast as they can at 20 a second together claim
// no more than the rate allows, a burst of one second's worth included,
// and not much less.
func TestPacedClaimsHoldTheRateAcrossStores(t *testing.T) {
	t.Parallel()
	stores := storesOn(t, pgtest.NewDatabase(t), 3)
	loadSubscribers(t, stores[0], 500)
	ingestEvent(t, stores[0], incidenttest.Updates()[0])
	const rate, run = 20.0, 3 * time.Second
	pace := store.ChannelPace("email", rate)
	start := time.Now()
	var mu sync.Mutex
	var claimed int
	var wg sync.WaitGroup
	for i, st := range stores {
		wg.Go(func() {
			for time.Since(start) < run {
				batch, wait, err := st.ClaimPaced(context.Background(), "email", 50, "w"+string(rune('a'+i)), time.Minute, pace)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				claimed += len(batch)
				mu.Unlock()
				time.Sleep(max(wait, 5*time.Millisecond))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	most := int(rate*elapsed + pace.Burst)
	least := int(rate * (elapsed - 0.5))
	t.Logf("%d claimed in %.2fs by %d stores at %v/s (allowed %d)", claimed, elapsed, len(stores), rate, most)
	if claimed > most || claimed < least {
		t.Errorf("%d claimed in %.2fs at %v/s, want between %d and %d", claimed, elapsed, rate, least, most)
	}
}

// TestTakeTokenSharesTheBucket: two stores draw from one bucket per key:
// the burst, then nothing until it refills; another key is untouched.
func TestTakeTokenSharesTheBucket(t *testing.T) {
	t.Parallel()
	stores := storesOn(t, pgtest.NewDatabase(t), 2)
	pace := store.Pace{Bucket: "test:198.51.100.7", PerSecond: 5, Burst: 3}
	now := time.Now()
	take := func(st *store.Store, p store.Pace) bool {
		t.Helper()
		ok, err := st.TakeToken(context.Background(), p, now)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for i := range 3 {
		if !take(stores[i%2], pace) {
			t.Fatalf("take %d of a burst of 3 refused", i+1)
		}
	}
	if take(stores[1], pace) || take(stores[0], pace) {
		t.Fatal("a fourth take within the burst was allowed")
	}
	other := pace
	other.Bucket = "test:198.51.100.8"
	if !take(stores[1], other) {
		t.Error("another key's bucket was empty")
	}
	now = now.Add(250 * time.Millisecond) // 5 a second: one token after 200ms
	if !take(stores[1], pace) {
		t.Error("no token after the refill time")
	}
	if take(stores[0], pace) {
		t.Error("two tokens after one refill time")
	}
	// A full bucket is forgotten: it says nothing a missing one does not.
	now = now.Add(time.Hour)
	for range 256 {
		take(stores[0], other)
	}
	var n int
	if err := stores[0].Pool().QueryRow(context.Background(), `SELECT count(*) FROM rate_buckets WHERE name = $1`, pace.Bucket).Scan(&n); err != nil || n != 0 {
		t.Errorf("a bucket full for an hour is still stored (%d, %v)", n, err)
	}
}
