package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

// ledger makes n subscribers of both channels and fans the first update
// out to them: n queued deliveries per channel. It returns the event id.
func ledger(t *testing.T, st *store.Store, n int) string {
	t.Helper()
	loadSubscribers(t, st, n)
	ev := incidenttest.Updates()[0]
	res, err := st.Ingest(context.Background(), ev, incidenttest.Raw(ev), 0)
	if err != nil || res.Queued["email"] != int64(n) {
		t.Fatalf("ingest: %+v %v, want %d email deliveries", res, err, n)
	}
	return ev.ID
}

// claim claims up to limit email deliveries for owner and fails the test
// unless it gets want of them.
func claim(t *testing.T, st *store.Store, limit int, owner string, lease time.Duration, want int) []store.Claimed {
	t.Helper()
	claimed, err := st.Claim(context.Background(), "email", limit, owner, lease)
	if err != nil || len(claimed) != want {
		t.Fatalf("claim by %s: %d, %v; want %d", owner, len(claimed), err, want)
	}
	return claimed
}

type attemptRow struct {
	Attempt   int
	StartedAt time.Time
	Outcome   string
}

// attemptsOf returns the attempt rows of a delivery, oldest start first.
func attemptsOf(t *testing.T, st *store.Store, id int64) []attemptRow {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(),
		`SELECT attempt, started_at, outcome FROM delivery_attempts WHERE delivery_id = $1 ORDER BY started_at, attempt`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []attemptRow
	for rows.Next() {
		var r attemptRow
		if err := rows.Scan(&r.Attempt, &r.StartedAt, &r.Outcome); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A worker whose Record call failed after the commit (the connection broke
// before the answer) writes the same batch again: that must succeed and
// leave one attempt row per outcome.
func TestRecordWrittenTwiceRecordsEachAttemptOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	ledger(t, st, 4)
	claimed := claim(t, st, 4, "w1", time.Minute, 4)
	start := time.Now()
	kinds := []string{store.OutcomeSent, store.OutcomeRetry, store.OutcomeFailed, store.OutcomeReleased}
	batch := make([]store.Outcome, len(claimed))
	for i, c := range claimed {
		batch[i] = store.Outcome{ID: c.ID, Attempt: c.Attempt, Outcome: kinds[i], StartedAt: start,
			NextAttemptAt: start.Add(time.Hour), ErrorCode: "451", Error: "try later"}
	}
	if n, err := st.Record(ctx, "w1", batch); err != nil || n != 4 {
		t.Fatalf("first record: %d %v, want 4 changed", n, err)
	}
	n, err := st.Record(ctx, "w1", batch)
	if err != nil {
		t.Fatalf("record written again: %v", err)
	}
	if n != 0 {
		t.Errorf("record written again changed %d deliveries, want 0", n)
	}
	for i, c := range claimed {
		got := attemptsOf(t, st, c.ID)
		want := 1
		if kinds[i] == store.OutcomeReleased {
			want = 0 // not attempted, not recorded
		}
		if len(got) != want {
			t.Errorf("%s delivery %d: %d attempt rows %+v, want %d", kinds[i], c.ID, len(got), got, want)
			continue
		}
		if want == 1 && (got[0].Attempt != 1 || got[0].Outcome != kinds[i]) {
			t.Errorf("%s delivery %d: attempt row %+v", kinds[i], c.ID, got[0])
		}
	}
}

// RetryFailed starts the attempt count again, so a delivery can have two
// attempts numbered 1; the later one starts later and is a row of its own.
func TestAttemptAfterRetryFailedIsRecordedAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	eventID := ledger(t, st, 1)

	first, err := st.Claim(ctx, "email", 1, "w1", time.Minute)
	if err != nil || len(first) != 1 || first[0].Attempt != 1 {
		t.Fatalf("claim: %+v %v", first, err)
	}
	t1 := time.Now()
	if _, err := st.Record(ctx, "w1", []store.Outcome{{ID: first[0].ID, Attempt: 1, Outcome: store.OutcomeFailed,
		ErrorCode: "550", Error: "mailbox unavailable", StartedAt: t1}}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.RetryFailed(ctx, store.Scope{EventID: eventID}); err != nil || n != 1 {
		t.Fatalf("retry failed: %d %v, want 1", n, err)
	}
	again, err := st.Claim(ctx, "email", 1, "w2", time.Minute)
	if err != nil || len(again) != 1 || again[0].ID != first[0].ID || again[0].Attempt != 1 {
		t.Fatalf("claim after retry: %+v %v, want delivery %d attempt 1", again, err, first[0].ID)
	}
	t2 := t1.Add(time.Second)
	if n, err := st.Record(ctx, "w2", []store.Outcome{{ID: again[0].ID, Attempt: 1, Outcome: store.OutcomeSent,
		ProviderID: "p-1", StartedAt: t2}}); err != nil || n != 1 {
		t.Fatalf("record after retry: %d %v, want 1 changed", n, err)
	}
	got := attemptsOf(t, st, first[0].ID)
	if len(got) != 2 {
		t.Fatalf("attempt rows %+v, want the failed and the sent attempt", got)
	}
	if got[0].Attempt != 1 || got[0].Outcome != store.OutcomeFailed || !got[0].StartedAt.Equal(t1.Truncate(time.Microsecond)) ||
		got[1].Attempt != 1 || got[1].Outcome != store.OutcomeSent || !got[1].StartedAt.Equal(t2.Truncate(time.Microsecond)) {
		t.Errorf("attempt rows %+v, want attempt 1 failed at %s then attempt 1 sent at %s", got, t1, t2)
	}
}

// An outcome belongs to its attempt: a retry outcome written again late
// (the worker's first Record call committed, its answer was lost, and the
// same worker re-claimed the delivery meanwhile) must not put the newer
// attempt, still being sent, back in the queue.
func TestStaleOutcomeLeavesNewerAttemptAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	ledger(t, st, 1)
	claimed := claim(t, st, 1, "w1", time.Minute, 1)
	retry := []store.Outcome{{ID: claimed[0].ID, Attempt: claimed[0].Attempt, Outcome: store.OutcomeRetry,
		StartedAt: time.Now(), NextAttemptAt: time.Now().Add(-time.Second), ErrorCode: "451", Error: "try later"}}
	if n, err := st.Record(ctx, "w1", retry); err != nil || n != 1 {
		t.Fatalf("record retry: %d %v", n, err)
	}
	again, err := st.Claim(ctx, "email", 1, "w1", time.Minute)
	if err != nil || len(again) != 1 || again[0].Attempt != 2 {
		t.Fatalf("claim again: %+v %v, want attempt 2", again, err)
	}
	if n, err := st.Record(ctx, "w1", retry); err != nil || n != 0 {
		t.Errorf("stale retry outcome written again: %d changed, %v; want 0", n, err)
	}
	var state string
	var attempts int
	if err := st.Pool().QueryRow(ctx, `SELECT state, attempts FROM deliveries WHERE id = $1`, again[0].ID).Scan(&state, &attempts); err != nil {
		t.Fatal(err)
	}
	if state != store.StateSending || attempts != 2 {
		t.Errorf("delivery %s after %d attempts, want sending after 2", state, attempts)
	}
}

// heapOnlyTuples counts the row versions of deliveries that PostgreSQL
// wrote as HOT updates: in place on their page, with no index entry.
func heapOnlyTuples(t *testing.T, st *store.Store) int64 {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Pool().Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pageinspect`); err != nil {
		t.Fatal(err)
	}
	var n int64
	err := st.Pool().QueryRow(ctx, `
		SELECT count(*)
		FROM generate_series(0, pg_relation_size('deliveries') / current_setting('block_size')::int - 1) AS b,
		     heap_page_items(get_raw_page('deliveries', b::int)) AS i
		WHERE i.t_infomask2 & 32768 <> 0 -- HEAP_ONLY_TUPLE`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A claim rewrites no index (migration 00007); it skips the rows leased to
// a live worker and takes those whose lease expired, counting the attempt
// that did not report.
func TestClaimUpdatesInPlaceAndTakesExpiredLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	ledger(t, st, 40)

	first := claim(t, st, 5, "w1", time.Hour, 5)
	if n := heapOnlyTuples(t, st); n != 5 {
		t.Errorf("%d claimed rows updated in place, want 5", n)
	}
	for _, c := range first {
		if c.Reclaimed || c.Attempt != 1 {
			t.Errorf("first claim: %+v", c)
		}
	}

	held := map[int64]bool{}
	for _, c := range first {
		held[c.ID] = true
	}
	second := claim(t, st, 100, "w2", time.Hour, 35) // the 35 not leased
	for _, c := range second {
		if held[c.ID] || c.Reclaimed {
			t.Errorf("second claim took %+v", c)
		}
	}

	// w1 dies: its lease runs out.
	if _, err := st.Pool().Exec(ctx, `UPDATE deliveries SET lease_expires_at = now() - interval '1 second' WHERE lease_owner = 'w1'`); err != nil {
		t.Fatal(err)
	}
	third := claim(t, st, 100, "w3", time.Hour, 5) // w1's 5
	for _, c := range third {
		if !held[c.ID] || !c.Reclaimed || c.Attempt != 2 {
			t.Errorf("reclaimed %+v, want one of w1's at attempt 2", c)
		}
	}
	var lastErr string
	if err := st.Pool().QueryRow(ctx, `SELECT last_error FROM deliveries WHERE id = $1`, third[0].ID).Scan(&lastErr); err != nil || lastErr != store.LeaseExpiredError {
		t.Errorf("last error %q (%v), want %q", lastErr, err, store.LeaseExpiredError)
	}

	// w1's late report is ignored; w3's outcome ends the delivery, which
	// leaves the queue's index.
	outs := func(cs []store.Claimed, kind string) []store.Outcome {
		o := make([]store.Outcome, len(cs))
		for i, c := range cs {
			o[i] = store.Outcome{ID: c.ID, Attempt: c.Attempt, Outcome: kind, StartedAt: c.ClaimedAt}
		}
		return o
	}
	if n, err := st.Record(ctx, "w1", outs(first, store.OutcomeSent)); err != nil || n != 0 {
		t.Errorf("late record: %d, %v", n, err)
	}
	if n, err := st.Record(ctx, "w3", outs(third, store.OutcomeSent)); err != nil || n != 5 {
		t.Errorf("record: %d, %v", n, err)
	}
	if n, err := st.Record(ctx, "w2", outs(second[:3], store.OutcomeFailed)); err != nil || n != 3 {
		t.Errorf("record: %d, %v", n, err)
	}
	var due, pending int64
	err := st.Pool().QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE next_attempt_at IS NOT NULL),
		       count(*) FILTER (WHERE state IN ('queued', 'sending'))
		FROM deliveries WHERE channel = 'email'`).Scan(&due, &pending)
	if err != nil || due != 32 || pending != 32 {
		t.Errorf("%d due, %d pending (%v); want the 32 still leased to w2", due, pending, err)
	}
	// The schema refuses a finished delivery that is still due.
	_, err = st.Pool().Exec(ctx, `UPDATE deliveries SET state = 'sent' WHERE id = $1`, second[5].ID)
	if err == nil {
		t.Error("a sent delivery with a next attempt was accepted")
	}
}

// The claim's plan must scan deliveries_ready in its order and stop after
// the batch, whatever the statistics say. Here they were gathered when few
// deliveries were pending, as autovacuum can gather them between two
// sends; then many were queued. The plan a prepared statement keeps would
// read every due row into a bitmap and sort them, on every claim (seen in
// crier-bench: twice PostgreSQL's CPU).
func TestClaimScansTheQueueInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	ledger(t, st, 5000) // 10,000 rows: ANALYZE reads them all
	for _, q := range []string{
		`ALTER TABLE deliveries SET (autovacuum_enabled = false)`,
		`UPDATE deliveries SET state = 'sent', next_attempt_at = NULL WHERE id % 50 <> 0`,
		`UPDATE deliveries SET state = 'sending', lease_owner = 'w', lease_expires_at = now() + interval '1 hour'
		 WHERE id % 50 = 0`,
		`ANALYZE deliveries`,
		`UPDATE deliveries SET state = 'queued', next_attempt_at = now() WHERE state = 'sent' AND id % 2 = 0`,
	} {
		if _, err := st.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	plan := func(settings []string) string {
		t.Helper()
		tx, err := st.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		for _, q := range append([]string{`SET LOCAL plan_cache_mode = force_generic_plan`, `PREPARE claim AS ` + store.ClaimSQL}, settings...) {
			if _, err := tx.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		rows, err := tx.Query(ctx, `EXPLAIN EXECUTE claim('email', 200, 'w', 60000, 'expired')`)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		// Prepared statements outlive the transaction.
		if _, err := tx.Exec(ctx, `DEALLOCATE claim`); err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	ordered := func(p string) bool {
		// The claimed rows (at most 200) are sorted back into queue order
		// at the end; no sort of the queue itself.
		sorts := strings.Count(p, "Sort Key:") - strings.Count(p, "Sort Key: c.priority DESC, c.next_attempt_at, c.id")
		return strings.Contains(p, "Index Scan using deliveries_ready") && sorts == 0 && !strings.Contains(p, "Bitmap")
	}
	if p := plan(nil); ordered(p) {
		t.Fatalf("without the claim's settings the plan is ordered too, so this test no longer shows what they prevent:\n%s", p)
	}
	if p := plan(store.ClaimPlan); !ordered(p) {
		t.Errorf("claim plan does not scan the queue in order:\n%s", p)
	}
}
