package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/incidenttest"
	"github.com/crier-dev/crier/internal/pgtest"
	"github.com/crier-dev/crier/internal/store"
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
	claimed, err := st.Claim(ctx, "email", 4, "w1", time.Minute)
	if err != nil || len(claimed) != 4 {
		t.Fatalf("claim: %d %v", len(claimed), err)
	}
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
	claimed, err := st.Claim(ctx, "email", 1, "w1", time.Minute)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %d %v", len(claimed), err)
	}
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
