package store_test

import (
	"context"
	"testing"

	"github.com/crier-dev/crier/internal/incidenttest"
	"github.com/crier-dev/crier/internal/pgtest"
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
