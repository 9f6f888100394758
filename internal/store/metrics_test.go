package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestQueueStats(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)

	stats, err := st.QueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 0 {
		t.Fatalf("empty ledger: got %+v, want no rows", stats)
	}

	if err := example.Load(ctx, st, example.Components(), example.Subscribers()); err != nil {
		t.Fatal(err)
	}
	// The first update names Sync Pod A: Alex (email and SMS, through
	// atlas-sync) and Sam (email) are told; Jo is not.
	ev := incidenttest.Updates()[0]
	if _, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 1); err != nil {
		t.Fatal(err)
	}
	// Age the email deliveries by a minute so the oldest age is measurable.
	if _, err := st.Pool().Exec(ctx, `UPDATE deliveries SET queued_at = now() - interval '60 seconds' WHERE channel = 'email'`); err != nil {
		t.Fatal(err)
	}
	stats, err = st.QueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"email": 2, "sms": 1}
	if len(stats) != len(want) {
		t.Fatalf("got %+v, want channels %v", stats, want)
	}
	for _, s := range stats {
		if s.Queued != want[s.Channel] {
			t.Errorf("%s: queued %d, want %d", s.Channel, s.Queued, want[s.Channel])
		}
	}
	email := stats[0]
	if email.Channel != "email" || email.OldestAge < 59*time.Second || email.OldestAge > 5*time.Minute {
		t.Errorf("email oldest age %s, want about a minute", email.OldestAge)
	}
	if sms := stats[1]; sms.OldestAge > 30*time.Second {
		t.Errorf("sms oldest age %s, want seconds", sms.OldestAge)
	}

	// Only queued rows count.
	if _, err := st.Pool().Exec(ctx, `UPDATE deliveries SET state = 'sent', next_attempt_at = NULL WHERE channel = 'sms'`); err != nil {
		t.Fatal(err)
	}
	stats, err = st.QueueStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].Channel != "email" {
		t.Errorf("after sending the SMS: got %+v, want only email", stats)
	}

	// A cancelled context is an error, not an empty queue.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.QueueStats(cctx); err == nil {
		t.Error("QueueStats with a cancelled context returned no error")
	}
}
