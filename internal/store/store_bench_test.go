package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

// loadSubscribers inserts n subscribers with both channels confirmed,
// following atlas-sync.
func loadSubscribers(tb testing.TB, st *store.Store, n int) {
	tb.Helper()
	loadSubscribersOn(tb, st, n, true)
}

// loadSubscribersOn is loadSubscribers with the email channel confirmed
// or not (SMS always is).
func loadSubscribersOn(tb testing.TB, st *store.Store, n int, email bool) {
	tb.Helper()
	ctx := context.Background()
	if err := example.Load(ctx, st, example.Components(), nil); err != nil {
		tb.Fatal(err)
	}
	_, err := st.Pool().Exec(ctx, `
		WITH s AS (
			INSERT INTO subscribers (email, phone, email_confirmed_at, sms_confirmed_at)
			SELECT 'm' || i || '@care.example', '+4474' || lpad(i::text, 8, '0'), CASE WHEN $2 THEN now() END, now()
			FROM generate_series(1, $1) i RETURNING id)
		INSERT INTO subscriptions (component_key, subscriber_id) SELECT 'atlas-sync', id FROM s`, n, email)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `ANALYZE`); err != nil {
		tb.Fatal(err)
	}
}

func benchEvent(i int) event.Event {
	ev := incidenttest.Updates()[0]
	ev.ID = fmt.Sprintf("bench-%d", i)
	ev.IncidentID = ev.ID
	return ev
}

// BenchmarkFanOut measures storing one event and fanning it out to
// 100,000 subscribers on both channels (200,000 deliveries).
func BenchmarkFanOut(b *testing.B) {
	st := pgtest.NewStore(b)
	loadSubscribers(b, st, 100_000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev := benchEvent(i)
		res, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 0)
		if err != nil || res.Queued["email"] != 100_000 {
			b.Fatalf("%+v %v", res, err)
		}
	}
	b.ReportMetric(float64(b.N)*200_000/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkFanOutMillion measures fanning one event out to 1,000,000
// subscribers on one channel (1,000,000 deliveries), alone on the
// database: the statement itself, without workers sending meanwhile.
// Loading the subscribers takes about half a minute first.
func BenchmarkFanOutMillion(b *testing.B) {
	const n = 1_000_000
	st := pgtest.NewStore(b)
	loadSubscribersOn(b, st, n, false)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		ev := benchEvent(i)
		res, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 0)
		if err != nil || res.Queued["sms"] != n || res.Queued["email"] != 0 {
			b.Fatalf("%+v %v", res, err)
		}
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkClaimAndRecord measures one worker cycle of 200 deliveries:
// claim them, then record them as sent.
func BenchmarkClaimAndRecord(b *testing.B) {
	st := pgtest.NewStore(b)
	loadSubscribers(b, st, 50_000)
	ctx := context.Background()
	ev := benchEvent(0)
	if _, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil {
		b.Fatal(err)
	}
	const batch = 200
	outs := make([]store.Outcome, 0, batch)
	var claimT, recordT time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i > 0 && i%(100_000/batch) == 0 {
			b.StopTimer()
			if _, err := st.Pool().Exec(ctx, `UPDATE deliveries SET state = 'queued', next_attempt_at = now(), provider_id = NULL`); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		t0 := time.Now()
		claimed, err := st.Claim(ctx, "email", batch, "bench", time.Minute)
		if err != nil || len(claimed) != batch {
			b.Fatalf("claimed %d: %v", len(claimed), err)
		}
		t1 := time.Now()
		outs = outs[:0]
		for _, c := range claimed {
			outs = append(outs, store.Outcome{ID: c.ID, Attempt: c.Attempt, Outcome: store.OutcomeSent, ProviderID: fmt.Sprint(c.ID), StartedAt: t0})
		}
		if n, err := st.Record(ctx, "bench", outs); err != nil || n != batch {
			b.Fatalf("recorded %d: %v", n, err)
		}
		claimT += t1.Sub(t0)
		recordT += time.Since(t1)
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(claimT.Microseconds())/float64(b.N), "claim-µs/op")
	b.ReportMetric(float64(recordT.Microseconds())/float64(b.N), "record-µs/op")
}

// BenchmarkClaimPaced measures what a deployment-wide pace adds to a claim:
// claims of 20 deliveries (a tenth of a second at 200/s) through Claim and
// through ClaimPaced with a bucket that never runs dry, released again so
// the queue stays full. The difference is the pace's cost per claim; per
// message it is that divided by the deliveries a claim takes.
func BenchmarkClaimPaced(b *testing.B) {
	st := pgtest.NewStore(b)
	loadSubscribers(b, st, 20_000)
	ctx := context.Background()
	ev := benchEvent(0)
	if _, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 0); err != nil {
		b.Fatal(err)
	}
	const batch = 20
	pace := store.ChannelPace("email", 1e9) // never dry: the statement's cost alone
	for _, paced := range []bool{false, true} {
		name := "unpaced"
		if paced {
			name = "paced"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				var claimed []store.Claimed
				var err error
				if paced {
					claimed, _, err = st.ClaimPaced(ctx, "email", batch, "bench", time.Minute, pace)
				} else {
					claimed, err = st.Claim(ctx, "email", batch, "bench", time.Minute)
				}
				if err != nil || len(claimed) != batch {
					b.Fatalf("claimed %d: %v", len(claimed), err)
				}
				b.StopTimer()
				outs := make([]store.Outcome, len(claimed))
				for i, c := range claimed {
					outs[i] = store.Outcome{ID: c.ID, Attempt: c.Attempt, Outcome: store.OutcomeReleased, NextAttemptAt: time.Now().Add(-time.Second)}
				}
				if _, err := st.Record(ctx, "bench", outs); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
