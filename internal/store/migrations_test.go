package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
	"github.com/crier-dev/crier/migrations"
)

// Every migration rolls back and applies again; the delivery_attempts key
// (00004) keeps the rows written before it, without the copies that retried
// Record calls used to leave, and rolling it back restores id and index.
// migrator returns a goose provider of crier's migrations on st's database.
func migrator(t *testing.T, st *store.Store) *goose.Provider {
	t.Helper()
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(st.Pool()), migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestMigrationsRollBackAndApplyAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	p := migrator(t, st)
	sources := p.ListSources()
	last := sources[len(sources)-1].Version

	// The template is fully migrated: everything rolls back.
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("roll back all: %v", err)
	}
	if v, err := p.GetDBVersion(ctx); err != nil || v != 0 {
		t.Fatalf("version after rolling back all: %d %v", v, err)
	}
	if _, err := p.UpTo(ctx, 3); err != nil {
		t.Fatal(err)
	}
	schema := func() (key, indexes string) {
		t.Helper()
		err := st.Pool().QueryRow(ctx, `
			SELECT (SELECT string_agg(a.attname, ',' ORDER BY k.ord)
			        FROM pg_constraint c
			        CROSS JOIN unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
			        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
			        WHERE c.conrelid = 'delivery_attempts'::regclass AND c.contype = 'p'),
			       (SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes
			        WHERE schemaname = 'public' AND tablename = 'delivery_attempts')`).Scan(&key, &indexes)
		if err != nil {
			t.Fatal(err)
		}
		return key, indexes
	}
	const (
		oldKey, oldIndexes = "id", "delivery_attempts_delivery,delivery_attempts_pkey"
		newKey, newIndexes = "delivery_id,attempt,started_at", "delivery_attempts_pkey"
	)
	if key, idx := schema(); key != oldKey || idx != oldIndexes {
		t.Fatalf("at 3: key %q, indexes %q", key, idx)
	}
	// Attempts as the old Record wrote them: delivery 1's first attempt
	// twice (a retried batch), and attempt 1 again after a manual retry.
	t0 := time.Date(2025, 11, 10, 13, 35, 0, 123456000, time.UTC)
	if _, err := st.Pool().Exec(ctx, `
		INSERT INTO delivery_attempts (delivery_id, attempt, started_at, outcome)
		VALUES (1, 1, $1, 'retry'), (1, 1, $1, 'retry'), (1, 2, $1 + interval '5 s', 'failed'),
		       (1, 1, $1 + interval '1 h', 'sent'), (2, 1, $1, 'sent')`, t0); err != nil {
		t.Fatal(err)
	}
	count := func() (n int) {
		t.Helper()
		if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM delivery_attempts`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	if _, err := p.UpTo(ctx, 4); err != nil {
		t.Fatalf("apply 4: %v", err)
	}
	if key, idx := schema(); key != newKey || idx != newIndexes {
		t.Errorf("at 4: key %q, indexes %q; want %q, %q", key, idx, newKey, newIndexes)
	}
	if n := count(); n != 4 {
		t.Errorf("at 4: %d attempt rows, want 4 (the copy removed)", n)
	}
	var hasID bool
	if err := st.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_name = 'delivery_attempts' AND column_name = 'id')`).Scan(&hasID); err != nil || hasID {
		t.Errorf("at 4: id column still there (%v)", err)
	}

	if _, err := p.DownTo(ctx, 3); err != nil {
		t.Fatalf("roll back 4: %v", err)
	}
	if key, idx := schema(); key != oldKey || idx != oldIndexes {
		t.Errorf("4 rolled back: key %q, indexes %q; want %q, %q", key, idx, oldKey, oldIndexes)
	}
	var ids, distinct int
	if err := st.Pool().QueryRow(ctx, `SELECT count(id), count(DISTINCT id) FROM delivery_attempts`).Scan(&ids, &distinct); err != nil || ids != 4 || distinct != 4 {
		t.Errorf("4 rolled back: %d ids, %d distinct (%v), want 4 rows numbered", ids, distinct, err)
	}
	// The old schema takes inserts again, duplicates included.
	if _, err := st.Pool().Exec(ctx, `INSERT INTO delivery_attempts (delivery_id, attempt, started_at, outcome)
		VALUES (2, 1, $1, 'sent')`, t0); err != nil {
		t.Errorf("insert after rolling back 4: %v", err)
	}

	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("apply all again: %v", err)
	}
	if v, err := p.GetDBVersion(ctx); err != nil || v != last {
		t.Errorf("version %d (%v), want %d", v, err, last)
	}
	if key, idx := schema(); key != newKey || idx != newIndexes {
		t.Errorf("applied again: key %q, indexes %q", key, idx)
	}
	if n := count(); n != 4 {
		t.Errorf("applied again: %d attempt rows, want 4", n)
	}
	// And the store works on the result.
	if _, err := st.Record(ctx, "w", []store.Outcome{{ID: 2, Attempt: 1, Outcome: store.OutcomeSent, StartedAt: t0}}); err != nil {
		t.Errorf("record on the migrated schema: %v", err)
	}
	if n := count(); n != 4 {
		t.Errorf("after recording a known attempt: %d rows, want 4", n)
	}
	if pending, err := st.MigrationsPending(ctx); err != nil || pending {
		t.Errorf("pending: %t %v", pending, err)
	}
}

// Migration 00006 gives the events stored before it the range of their
// delivery ids, the same range fan-out records, so the reports still find
// their deliveries.
func TestEventDeliveryRangeMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	ledger(t, st, 7)
	ev := benchEvent(1)
	if _, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil {
		t.Fatal(err)
	}
	ranges := func() (r string) {
		t.Helper()
		if err := st.Pool().QueryRow(ctx, `
			SELECT string_agg(id || ':' || first_delivery_id || '-' || last_delivery_id, ',' ORDER BY id)
			FROM events`).Scan(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	want := ranges()
	p := migrator(t, st)
	if _, err := p.DownTo(ctx, 5); err != nil {
		t.Fatalf("roll back to 5: %v", err)
	}
	if _, err := p.UpTo(ctx, 6); err != nil {
		t.Fatalf("apply 6: %v", err)
	}
	if got := ranges(); got != want || got == "" {
		t.Errorf("ranges after migrating: %q, want %q as fan-out recorded them", got, want)
	}
	counts, err := st.CountDeliveries(ctx, store.Scope{EventID: ev.ID})
	if err != nil || len(counts) != 2 || counts[0].Count != 7 || counts[1].Count != 7 {
		t.Errorf("counts of %s after migrating: %v (%v), want 7 per channel", ev.ID, counts, err)
	}
}

// Migration 00007 keeps next_attempt_at only on deliveries still to be
// sent, which the new queue index and its CHECK need; rolling it back
// restores a time on every row and the old indexes.
func TestDueWhilePendingMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	ledger(t, st, 6)
	p := migrator(t, st)
	if _, err := p.DownTo(ctx, 6); err != nil {
		t.Fatalf("roll back to 6: %v", err)
	}
	var nulls int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE next_attempt_at IS NULL`).Scan(&nulls); err != nil || nulls != 0 {
		t.Fatalf("rolled back: %d rows without a next attempt (%v)", nulls, err)
	}
	// Rows in every state, as the old code left them: all with a time.
	if _, err := st.Pool().Exec(ctx, `
		UPDATE deliveries SET state = (ARRAY['queued', 'sending', 'sent', 'delivered', 'failed', 'superseded'])[1 + subscriber_id % 6],
		       lease_expires_at = CASE WHEN subscriber_id % 6 = 1 THEN now() + interval '1 minute' END`); err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 7); err != nil {
		t.Fatalf("apply 7: %v", err)
	}
	var wrong int
	if err := st.Pool().QueryRow(ctx, `
		SELECT count(*) FROM deliveries
		WHERE (next_attempt_at IS NOT NULL) <> (state IN ('queued', 'sending'))`).Scan(&wrong); err != nil || wrong != 0 {
		t.Errorf("at 7: %d rows due while finished or not due while pending (%v)", wrong, err)
	}
	indexesOf := func() (indexes string) {
		t.Helper()
		if err := st.Pool().QueryRow(ctx, `
			SELECT string_agg(indexdef, '; ' ORDER BY indexname) FROM pg_indexes
			WHERE tablename = 'deliveries' AND indexname IN ('deliveries_ready', 'deliveries_leased')`).Scan(&indexes); err != nil {
			t.Fatal(err)
		}
		return indexes
	}
	if got := indexesOf(); !strings.Contains(got, "WHERE (next_attempt_at IS NOT NULL)") || strings.Contains(got, "deliveries_leased") {
		t.Errorf("at 7: %s", got)
	}
	// With every later migration too (the claim needs them): the email
	// with a live lease stays with its worker; the one queued email (of
	// subscribers 1 to 6, the sixth) is claimed.
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("apply the rest: %v", err)
	}
	claimed, err := st.Claim(ctx, "email", 10, "w", time.Minute)
	if err != nil || len(claimed) != 1 {
		t.Errorf("claim after 7: %d, %v; want the one queued email", len(claimed), err)
	}

	if _, err := p.DownTo(ctx, 6); err != nil {
		t.Fatalf("roll back to 6: %v", err)
	}
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE next_attempt_at IS NULL`).Scan(&nulls); err != nil || nulls != 0 {
		t.Errorf("7 rolled back: %d rows without a next attempt (%v)", nulls, err)
	}
	if got := indexesOf(); !strings.Contains(got, "WHERE (state = 'queued'::text)") || !strings.Contains(got, "deliveries_leased") {
		t.Errorf("7 rolled back: %s", got)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("apply all again: %v", err)
	}
}

// TestOrganisationNamesBecomeRecords: migration 00013 turns the free-text
// organisation names into organisations keyed by their slugs, one per
// distinct name, and points each subscriber at theirs; rolling it back
// gives the names back.
func TestOrganisationNamesBecomeRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	p := migrator(t, st)
	if _, err := p.DownTo(ctx, 12); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `
		INSERT INTO subscribers (email, organisation) VALUES
			('a@oakview.example', 'Oakview Care Home'), ('b@oakview.example', ' Oakview Care Home '),
			('c@riverside.example', 'Riverside (North)'), ('d@riverside.example', 'riverside north'),
			('e@alone.example', ''), ('f@odd.example', '***')`); err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 13); err != nil {
		t.Fatal(err)
	}
	rows, err := st.Pool().Query(ctx, `
		SELECT s.email, coalesce(o.key, ''), coalesce(o.name, ''), s.role
		FROM subscribers s LEFT JOIN organisations o ON o.key = s.organisation_key ORDER BY s.email`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var email, key, name, role string
		if err := rows.Scan(&email, &key, &name, &role); err != nil {
			t.Fatal(err)
		}
		got = append(got, email+"="+key+"|"+name+"|"+role)
	}
	want := []string{
		"a@oakview.example=oakview-care-home|Oakview Care Home|primary",
		"b@oakview.example=oakview-care-home|Oakview Care Home|primary",
		"c@riverside.example=riverside-north|Riverside (North)|primary",
		"d@riverside.example=riverside-north-2|riverside north|primary",
		"e@alone.example=||primary",
		"f@odd.example=home|***|primary",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after 00013:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := p.DownTo(ctx, 12); err != nil {
		t.Fatal(err)
	}
	var names string
	if err := st.Pool().QueryRow(ctx, `SELECT string_agg(organisation, ',' ORDER BY email) FROM subscribers`).Scan(&names); err != nil ||
		names != "Oakview Care Home,Oakview Care Home,Riverside (North),riverside north,,***" {
		t.Errorf("after rolling back: %q (%v)", names, err)
	}
}
