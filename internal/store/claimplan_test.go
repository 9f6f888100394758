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

// The claim's plan must not depend on statistics. On one connection, as a
// worker's pooled connection does, the claim's generic plan is made while
// the table is empty and just analyzed (a quiet start); then 20,000
// deliveries are queued, and the plan that connection keeps must still
// find the picked rows by their ids, scanning nothing per claimed row.
// (The claim before this test joined the picked rows to deliveries; the
// plan kept from the empty table hashed a full index scan of deliveries
// on every claim: 5.2 s per claim of 200 with 100,000 queued.)
func TestClaimPlanSurvivesAnEmptyAnalyze(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	conn, err := st.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	exec := func(qs ...string) {
		t.Helper()
		for _, q := range qs {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	explain := func() string {
		t.Helper()
		rows, err := conn.Query(ctx, `EXPLAIN EXECUTE claim_generic('email', 200, 'w', 60000, 'expired')`)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	exec(`ALTER TABLE deliveries SET (autovacuum_enabled = false)`, `ANALYZE deliveries`)
	exec(append(append([]string{`SET plan_cache_mode = force_generic_plan`}, strings.ReplaceAll(strings.Join(store.ClaimPlan, ";"), "LOCAL ", "")),
		`PREPARE claim_generic AS `+store.ClaimSQL)...)
	empty := explain()
	loadSubscribers(t, st, 20000)
	ev := incidenttest.Updates()[0]
	if res, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil || res.Queued["email"] != 20000 {
		t.Fatalf("ingest: %+v %v", res, err)
	}
	kept := explain()
	if kept != empty {
		t.Fatalf("the connection re-planned the claim, so this test no longer sees the plan kept from the empty table:\n%s\n---\n%s", empty, kept)
	}
	t.Logf("plan kept from the empty table:\n%s", kept)
	// Two scans of deliveries, each bounded by its condition: the queue's
	// index in order, and the primary key for the picked ids. Sorting the
	// at most 200 claimed rows back into queue order is fine.
	var scans []string
	for _, l := range strings.Split(kept, "\n") {
		if strings.Contains(l, "Scan") && strings.Contains(l, " on deliveries") {
			scans = append(scans, strings.TrimSpace(l[:strings.Index(l, "(cost")]))
		}
	}
	want := []string{"->  Index Scan using deliveries_ready on deliveries", "->  Index Scan using deliveries_pkey on deliveries d"}
	if strings.Join(scans, "|") != strings.Join(want, "|") || !strings.Contains(kept, "Index Cond: (id = ANY") {
		t.Errorf("scans of deliveries %q, want %q with the update's by id = ANY:\n%s", scans, want, kept)
	}
	for _, bad := range []string{"Seq Scan", "Bitmap", "Join Filter: (d."} {
		if strings.Contains(kept, bad) {
			t.Errorf("plan has %q:\n%s", bad, kept)
		}
	}
	exec(`DEALLOCATE claim_generic`, `RESET plan_cache_mode`, `RESET enable_bitmapscan`, `RESET enable_seqscan`)
}

// emptyAnalyzed queues n email deliveries in a store whose deliveries table
// was analyzed while empty and claimed from ten times first, as after a
// quiet start: every pooled connection keeps a claim plan made for an empty
// queue.
func emptyAnalyzed(t testing.TB, n int) *store.Store {
	t.Helper()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	for _, q := range []string{`ALTER TABLE deliveries SET (autovacuum_enabled = false)`, `ANALYZE deliveries`} {
		if _, err := st.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		if _, err := st.Claim(ctx, "email", 200, "idle", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	loadSubscribers(t, st, n)
	ev := incidenttest.Updates()[0]
	if res, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil || res.Queued["email"] != int64(n) {
		t.Fatalf("ingest: %+v %v, want %d email deliveries", res, err, n)
	}
	return st
}

// BenchmarkClaimAfterEmptyAnalyze claims batches of 200 from 100,000 queued
// emails after the table was analyzed empty (run with -benchtime=100x).
func BenchmarkClaimAfterEmptyAnalyze(b *testing.B) {
	ctx := context.Background()
	st := emptyAnalyzed(b, 100_000)
	b.ResetTimer()
	for b.Loop() {
		got, err := st.Claim(ctx, "email", 200, "w", time.Hour)
		if err != nil || len(got) == 0 {
			b.Fatalf("claim: %d, %v", len(got), err)
		}
	}
}
