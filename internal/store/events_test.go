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

func TestChunkedFanOutMatchesOneChunkAndResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	one, chunked := pgtest.NewStore(t), pgtest.NewStore(t)
	loadSubscribers(t, one, 23)
	loadSubscribers(t, chunked, 23)
	updates := incidenttest.Updates()
	for _, ev := range updates[3:6] {
		if _, err := one.IngestChunked(ctx, ev, incidenttest.Raw(ev), 0, 1000); err != nil {
			t.Fatal(err)
		}
		res, err := chunked.IngestChunked(ctx, ev, incidenttest.Raw(ev), 0, 5)
		if err != nil {
			t.Fatal(err)
		}
		// Ids 1-23 in chunks of 5, 10, 20 ids.
		if res.Chunks != 3 || res.Queued["email"] != 23 || res.Queued["sms"] != 23 {
			t.Errorf("chunked result %+v, want 3 chunks and 23 per channel", res)
		}
	}
	q := `SELECT string_agg(event_id || '/' || subscriber_id || '/' || channel || '/' || state, ',' ORDER BY event_id, subscriber_id, channel) FROM deliveries`
	var a, b string
	if err := one.Pool().QueryRow(ctx, q).Scan(&a); err != nil {
		t.Fatal(err)
	}
	if err := chunked.Pool().QueryRow(ctx, q).Scan(&b); err != nil {
		t.Fatal(err)
	}
	if a != b || a == "" {
		t.Errorf("chunked ledger differs from one-chunk ledger:\n%s\n%s", a, b)
	}

	// A fan-out that stopped after its first chunk (the event stored but
	// not marked fanned out) resumes without creating anything twice.
	ev := updates[6]
	if _, err := chunked.IngestChunked(ctx, ev, incidenttest.Raw(ev), 0, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := chunked.Pool().Exec(ctx, `
		UPDATE events SET fanned_out_at = NULL WHERE id = $1;`, ev.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := chunked.Pool().Exec(ctx, `DELETE FROM deliveries WHERE event_id = $1 AND subscriber_id > 10`, ev.ID); err != nil {
		t.Fatal(err)
	}
	res, err := chunked.IngestChunked(ctx, ev, incidenttest.Raw(ev), 0, 5)
	if err != nil || res.Duplicate {
		t.Fatalf("resume: %+v %v", res, err)
	}
	if res.Queued["email"] != 13 {
		t.Errorf("resume created %d email deliveries, want the 13 missing", res.Queued["email"])
	}
	var n int
	if err := chunked.Pool().QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE event_id = $1`, ev.ID).Scan(&n); err != nil || n != 46 {
		t.Errorf("deliveries after resume = %d (%v), want 46", n, err)
	}
	if res, err := chunked.IngestChunked(ctx, ev, incidenttest.Raw(ev), 0, 5); err != nil || !res.Duplicate {
		t.Errorf("after completion: %+v %v, want duplicate", res, err)
	}
}

func TestConcurrentMigrationsAgree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	// The template is already migrated: reset to empty, then migrate from
	// four goroutines at once.
	if _, err := st.Pool().Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := st.Migrate(ctx, nil)
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent migrate: %v", err)
		}
	}
	if pending, err := st.MigrationsPending(ctx); err != nil || pending {
		t.Errorf("pending after migrate: %t %v", pending, err)
	}
}

// A new event is fanned out with plain inserts. When some of its
// deliveries appear meanwhile (another process got the same message from
// JetStream and fanned out a chunk first), the chunk that meets them is
// fanned out again skipping them, and so is the rest.
func TestFreshFanOutMeetingExistingDeliveriesSkipsThem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	loadSubscribers(t, st, 23)
	ev := incidenttest.Updates()[3]
	// As the other process would have: email deliveries to subscribers
	// 6-8, in the second chunk (ids 6-15) of chunks of 5, 10, 20.
	if _, err := st.Pool().Exec(ctx, `
		INSERT INTO deliveries (event_id, incident_id, occurred_at, subscriber_id, channel, address)
		SELECT $1, $2, $3, id, 'email', email FROM subscribers WHERE id BETWEEN 6 AND 8`,
		ev.ID, ev.IncidentID, ev.OccurredAt); err != nil {
		t.Fatal(err)
	}
	res, err := st.IngestChunked(ctx, ev, incidenttest.Raw(ev), 0, 5)
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	if res.Duplicate || res.Chunks != 3 || res.Queued["email"] != 20 || res.Queued["sms"] != 23 {
		t.Errorf("result %+v, want 3 chunks queuing 20 emails (3 existed) and 23 texts", res)
	}
	var n, distinct int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT (subscriber_id, channel)) FROM deliveries WHERE event_id = $1`, ev.ID).Scan(&n, &distinct); err != nil || n != 46 || distinct != 46 {
		t.Errorf("%d deliveries, %d distinct (%v), want 46", n, distinct, err)
	}
}

// The reports find an event's deliveries by the range of ids its fan-out
// created (there is no index on event_id). The range of an event whose
// fan-out resumed after another event's spans that event's deliveries,
// which must be left out.
func TestScopesReadOnlyTheirEventsDeliveries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	loadSubscribers(t, st, 12)
	a, b := benchEvent(1), benchEvent(2) // two incidents
	a2 := a
	a2.ID, a2.OccurredAt = "bench-1-later", a.OccurredAt.Add(time.Minute)
	ingest := func(ev event.Event) {
		t.Helper()
		if _, err := st.IngestChunked(ctx, ev, incidenttest.Raw(ev), 0, 5); err != nil {
			t.Fatal(err)
		}
	}
	ingest(a)
	ingest(b)
	// a's fan-out stopped part-way and resumes after b's.
	if _, err := st.Pool().Exec(ctx, `
		UPDATE events SET fanned_out_at = NULL WHERE id = $1;`, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `DELETE FROM deliveries WHERE event_id = $1 AND subscriber_id > 6`, a.ID); err != nil {
		t.Fatal(err)
	}
	ingest(a)
	ingest(a2)
	var spans bool
	if err := st.Pool().QueryRow(ctx, `
		SELECT ea.first_delivery_id < eb.first_delivery_id AND eb.last_delivery_id < ea.last_delivery_id
		FROM events ea, events eb WHERE ea.id = $1 AND eb.id = $2`, a.ID, b.ID).Scan(&spans); err != nil || !spans {
		t.Fatalf("a's range does not span b's (%v): the test does not test the overlap", err)
	}

	total := func(counts []store.StateCount) (n int64) {
		for _, c := range counts {
			n += c.Count
		}
		return n
	}
	for _, tt := range []struct {
		scope store.Scope
		want  int64
	}{
		{store.Scope{EventID: a.ID}, 24},
		{store.Scope{EventID: b.ID}, 24},
		{store.Scope{EventID: a2.ID}, 24},
		{store.Scope{EventID: "no-such-event"}, 0},
		{store.Scope{IncidentID: a.IncidentID}, 48},
		{store.Scope{IncidentID: b.IncidentID}, 24},
	} {
		counts, err := st.CountDeliveries(ctx, tt.scope)
		if err != nil || total(counts) != tt.want {
			t.Errorf("CountDeliveries(%+v) = %v (%v), want %d in all", tt.scope, counts, err, tt.want)
		}
		// Listed in pages of 5, in id order, each of the scope.
		var listed int64
		var after int64
		for {
			page, err := st.ListDeliveries(ctx, store.DeliveryFilter{Scope: tt.scope, AfterID: after, Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, d := range page {
				if d.ID <= after || (tt.scope.EventID != "" && d.EventID != tt.scope.EventID) ||
					(tt.scope.IncidentID == b.IncidentID && d.EventID != b.ID) {
					t.Fatalf("ListDeliveries(%+v) after %d: delivery %d of %s", tt.scope, after, d.ID, d.EventID)
				}
				after = d.ID
			}
			listed += int64(len(page))
		}
		if listed != tt.want {
			t.Errorf("ListDeliveries(%+v) listed %d, want %d", tt.scope, listed, tt.want)
		}
	}
	byEvent, err := st.CountDeliveriesByEvent(ctx, []string{a.ID, b.ID, "no-such-event"})
	if err != nil || len(byEvent) != 2 || total(byEvent[a.ID]) != 24 || total(byEvent[b.ID]) != 24 {
		t.Errorf("CountDeliveriesByEvent = %v (%v), want 24 for each of 2 events", byEvent, err)
	}

	// Retrying b's failures leaves a's alone.
	if _, err := st.Pool().Exec(ctx, `UPDATE deliveries SET state = 'failed', next_attempt_at = NULL WHERE subscriber_id <= 3`); err != nil {
		t.Fatal(err)
	}
	if n, err := st.RetryFailed(ctx, store.Scope{EventID: b.ID}); err != nil || n != 6 {
		t.Errorf("RetryFailed(b) = %d (%v), want 6", n, err)
	}
	var failed int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE state = 'failed'`).Scan(&failed); err != nil || failed != 12 {
		t.Errorf("%d failed after retrying b's (%v), want a's and a2's 12", failed, err)
	}
}

// Two updates of one incident fanned out at once, each in parallel
// chunks: the incident's lock keeps them from interleaving, so the newer
// one is left queued for everyone and the older one superseded, whichever
// starts first. No advisory lock outlives the fan-outs.
func TestConcurrentFanOutsOfOneIncidentSupersedeExactly(t *testing.T) {
	t.Parallel()
	// A lock left held would make a later fan-out wait for ever.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range 4 {
		st := pgtest.NewStore(t)
		loadSubscribers(t, st, 30)
		updates := incidenttest.Updates()
		older, newer := updates[0], updates[1]
		if older.IncidentID != newer.IncidentID || !newer.OccurredAt.After(older.OccurredAt) {
			t.Fatal("the first two updates are not of one incident, in order")
		}
		var wg sync.WaitGroup
		for i, ev := range []event.Event{older, newer} {
			wg.Go(func() {
				if round%2 == 1 && i == 0 {
					time.Sleep(5 * time.Millisecond) // the newer one first
				}
				if _, err := st.IngestChunked(ctx, ev, incidenttest.Raw(ev), 0, 3); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		var stale, current, locks int
		if err := st.Pool().QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE event_id = $1 AND state <> 'superseded'),
			       count(*) FILTER (WHERE event_id = $2 AND state = 'queued'),
			       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
			FROM deliveries`, older.ID, newer.ID).Scan(&stale, &current, &locks); err != nil {
			t.Fatal(err)
		}
		if stale != 0 || current != 60 || locks != 0 {
			t.Errorf("round %d: %d older deliveries not superseded, %d newer queued (want 60), %d advisory locks held",
				round, stale, current, locks)
		}
	}
}

// A fan-out that gives up waiting for its incident's lock leaves no lock
// behind and its connection's pool usable.
func TestFanOutWaitingForTheIncidentGivesUpCleanly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	loadSubscribers(t, st, 5)
	ev := incidenttest.Updates()[0]
	holder, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 7))`, ev.IncidentID); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := st.Ingest(short, ev, incidenttest.Raw(ev), 0); err == nil {
		t.Fatal("Ingest succeeded while another session held the incident's lock")
	}
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 7))`, ev.IncidentID); err != nil {
		t.Fatal(err)
	}
	holder.Release()
	res, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 0)
	if err != nil || res.Queued["sms"] != 5 {
		t.Fatalf("Ingest after the lock was freed: %+v %v", res, err)
	}
	var locks int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks); err != nil || locks != 0 {
		t.Errorf("%d advisory locks held (%v)", locks, err)
	}
}
