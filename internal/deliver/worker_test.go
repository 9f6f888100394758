package deliver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// scriptSender is a channel sender whose answer per address and attempt is
// scripted by the test; it records what it accepted.
type scriptSender struct {
	mu       sync.Mutex
	answer   func(to string, n int) error // n counts calls for this address from 1
	calls    map[string]int
	accepted map[string][]string // address -> event ids (from Subject)
	block    chan struct{}       // when non-nil, Send waits for it to close
	started  atomic.Int64
}

func newScriptSender(answer func(to string, n int) error) *scriptSender {
	return &scriptSender{answer: answer, calls: map[string]int{}, accepted: map[string][]string{}}
}

func (s *scriptSender) Send(ctx context.Context, m deliver.Message) (string, error) {
	s.started.Add(1)
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[m.To]++
	if s.answer != nil {
		if err := s.answer(m.To, s.calls[m.To]); err != nil {
			return "", err
		}
	}
	s.accepted[m.To] = append(s.accepted[m.To], m.Subject)
	return fmt.Sprintf("prov-%d", m.DeliveryID), nil
}

func (s *scriptSender) callsTo(to string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[to]
}

func (s *scriptSender) count(to string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.accepted[to])
}

func (s *scriptSender) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.accepted {
		n += len(a)
	}
	return n
}

// subjectComposer builds a message whose Subject is the event id.
type subjectComposer struct{}

func (subjectComposer) Compose(_ context.Context, d store.Claimed) (deliver.Message, error) {
	return deliver.Message{DeliveryID: d.ID, Channel: d.Channel, To: d.Address, Subject: d.EventID, Text: "body"}, nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup returns a store with the example catalog and n confirmed email
// subscribers of atlas-sync (user0@example.org ...).
func setup(t *testing.T, n int) *store.Store {
	t.Helper()
	st := pgtest.NewStore(t)
	ctx := context.Background()
	if err := example.Load(ctx, st, example.Components(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `
		WITH s AS (
			INSERT INTO subscribers (email, email_confirmed_at)
			SELECT 'user' || i || '@example.org', now() FROM generate_series(0, $1 - 1) i
			RETURNING id)
		INSERT INTO subscriptions (component_key, subscriber_id) SELECT 'atlas-sync', id FROM s`, n); err != nil {
		t.Fatal(err)
	}
	return st
}

func ingest(t *testing.T, st *store.Store, ev event.Event) {
	t.Helper()
	if _, err := st.Ingest(context.Background(), ev, incidenttest.Raw(ev), 0); err != nil {
		t.Fatal(err)
	}
}

func fastConfig() deliver.Config {
	return deliver.Config{
		Channel:       deliver.ChannelEmail,
		Concurrency:   4,
		BatchSize:     10,
		BaseBackoff:   50 * time.Millisecond,
		MaxBackoff:    200 * time.Millisecond,
		PollInterval:  20 * time.Millisecond,
		FlushInterval: 5 * time.Millisecond,
	}
}

func start(t *testing.T, cfg deliver.Config, st *store.Store, s deliver.Sender) (stop func()) {
	t.Helper()
	w, err := deliver.NewWorker(cfg, st, s, subjectComposer{}, quietLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func states(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	counts, err := st.CountDeliveries(context.Background(), store.Scope{IncidentID: incidenttest.IncidentID})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, c := range counts {
		out[c.State] += int(c.Count)
	}
	return out
}

func scalar(t *testing.T, st *store.Store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := st.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSendsEveryQueuedDeliveryOnceAndRecordsIt(t *testing.T) {
	t.Parallel()
	st := setup(t, 50)
	ingest(t, st, incidenttest.Updates()[0])
	s := newScriptSender(nil)
	start(t, fastConfig(), st, s)
	waitFor(t, "50 sent", 10*time.Second, func() bool { return states(t, st)["sent"] == 50 })
	if s.total() != 50 {
		t.Errorf("sender accepted %d messages, want 50", s.total())
	}
	for i := range 50 {
		if n := s.count(fmt.Sprintf("user%d@example.org", i)); n != 1 {
			t.Errorf("user%d got %d messages", i, n)
		}
	}
	if n := scalar(t, st, `SELECT count(*) FROM delivery_attempts WHERE outcome = 'sent' AND provider_id LIKE 'prov-%'`); n != 50 {
		t.Errorf("%d sent attempts recorded, want 50", n)
	}
	if n := scalar(t, st, `SELECT count(*) FROM deliveries WHERE provider_id IS NULL OR sent_at IS NULL OR attempts <> 1 OR lease_owner IS NOT NULL`); n != 0 {
		t.Errorf("%d deliveries without provider id, sent time, one attempt or a cleared lease", n)
	}
}

func TestTransientErrorsAreRetriedPermanentOnesFailAtOnce(t *testing.T) {
	t.Parallel()
	st := setup(t, 10)
	ingest(t, st, incidenttest.Updates()[0])
	s := newScriptSender(func(to string, n int) error {
		switch {
		case to == "user3@example.org":
			return deliver.Permanent("550", errors.New("5.1.1 mailbox unknown"))
		case n <= 2:
			return &deliver.TransientError{Code: "451", Err: errors.New("4.3.0 try again later")}
		}
		return nil
	})
	start(t, fastConfig(), st, s)
	waitFor(t, "9 sent and 1 failed", 10*time.Second, func() bool {
		m := states(t, st)
		return m["sent"] == 9 && m["failed"] == 1
	})
	var code, lastErr string
	var attempts int
	if err := st.Pool().QueryRow(context.Background(),
		`SELECT error_code, last_error, attempts FROM deliveries WHERE address = 'user3@example.org'`).Scan(&code, &lastErr, &attempts); err != nil {
		t.Fatal(err)
	}
	if code != "550" || attempts != 1 || !contains(lastErr, "mailbox unknown") {
		t.Errorf("failed delivery: code %q, %d attempts, error %q; want 550 after 1 attempt with the server's text", code, attempts, lastErr)
	}
	// Each of the other nine: two retries then success, each attempt recorded.
	if n := scalar(t, st, `SELECT count(*) FROM delivery_attempts WHERE outcome = 'retry' AND error_code = '451'`); n != 18 {
		t.Errorf("%d retry attempts recorded, want 18", n)
	}
	if s.total() != 9 {
		t.Errorf("accepted %d, want 9 (once each)", s.total())
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestAttemptsAndAgeAreBounded(t *testing.T) {
	t.Parallel()
	st := setup(t, 2)
	ingest(t, st, incidenttest.Updates()[0])
	// user0 never succeeds; user1's delivery is older than the maximum age.
	if _, err := st.Pool().Exec(context.Background(), `UPDATE deliveries SET queued_at = now() - interval '3 hours' WHERE address = 'user1@example.org'`); err != nil {
		t.Fatal(err)
	}
	s := newScriptSender(func(string, int) error { return errors.New("connection refused") })
	cfg := fastConfig()
	cfg.MaxAttempts = 3
	cfg.MaxAge = 2 * time.Hour
	start(t, cfg, st, s)
	waitFor(t, "both failed", 10*time.Second, func() bool { return states(t, st)["failed"] == 2 })
	if n := scalar(t, st, `SELECT attempts FROM deliveries WHERE address = 'user0@example.org'`); n != 3 {
		t.Errorf("user0 attempts = %d, want 3", n)
	}
	if n := scalar(t, st, `SELECT count(*) FROM deliveries WHERE address = 'user1@example.org' AND error_code = 'expired'`); n != 1 {
		t.Error("user1's old delivery did not fail as expired")
	}
	if s.callsTo("user1@example.org") != 0 {
		t.Error("an expired delivery was sent")
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	st := setup(t, 1)
	ingest(t, st, incidenttest.Updates()[0])
	s := newScriptSender(func(_ string, n int) error {
		if n == 1 {
			return &deliver.TransientError{Code: "20429", RetryAfter: 10 * time.Minute, Err: errors.New("too many requests")}
		}
		return nil
	})
	start(t, fastConfig(), st, s)
	// Queued again after one attempt means the worker has recorded the
	// outcome (the claim alone sets state 'sending'); reading the state and
	// the sender's call count separately would race with the record.
	waitFor(t, "retry scheduled", 5*time.Second, func() bool {
		return scalar(t, st, `SELECT count(*) FROM deliveries WHERE state = 'queued' AND attempts = 1`) == 1
	})
	if n := s.callsTo("user0@example.org"); n != 1 {
		t.Errorf("sender called %d times, want 1", n)
	}
	if n := scalar(t, st, `SELECT count(*) FROM deliveries WHERE next_attempt_at > now() + interval '9 minutes'`); n != 1 {
		t.Error("next attempt not scheduled after Retry-After")
	}
}

func TestDeadWorkersLeaseExpiresAndTheRestIsSent(t *testing.T) {
	t.Parallel()
	st := setup(t, 30)
	ingest(t, st, incidenttest.Updates()[0])
	// A worker claims 20 deliveries and dies without recording anything.
	claimed, err := st.Claim(context.Background(), deliver.ChannelEmail, 20, "dead-worker", 300*time.Millisecond)
	if err != nil || len(claimed) != 20 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	s := newScriptSender(nil)
	start(t, fastConfig(), st, s)
	waitFor(t, "all 30 sent", 10*time.Second, func() bool { return states(t, st)["sent"] == 30 })
	if s.total() != 30 {
		t.Errorf("accepted %d, want 30", s.total())
	}
	// The dead worker's late report must not overwrite the new outcome.
	outs := make([]store.Outcome, len(claimed))
	for i, c := range claimed {
		outs[i] = store.Outcome{ID: c.ID, Attempt: c.Attempt, Outcome: store.OutcomeFailed, Error: "late"}
	}
	if n, err := st.Record(context.Background(), "dead-worker", outs); err != nil || n != 0 {
		t.Errorf("late record changed %d rows (err %v), want 0", n, err)
	}
	if states(t, st)["sent"] != 30 {
		t.Error("a late report from a dead worker changed a delivery")
	}
}

func TestShutdownFinishesInFlightAndReleasesTheRest(t *testing.T) {
	t.Parallel()
	st := setup(t, 40)
	ingest(t, st, incidenttest.Updates()[0])
	s := newScriptSender(nil)
	s.block = make(chan struct{})
	cfg := fastConfig()
	cfg.Concurrency = 2
	cfg.BatchSize = 40
	stop := start(t, cfg, st, s)
	waitFor(t, "two sends in flight", 5*time.Second, func() bool { return s.started.Load() == 2 })
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(50 * time.Millisecond)
	s.mu.Lock()
	close(s.block) // the provider answers the two sends in flight
	s.block = nil
	s.mu.Unlock()
	<-stopped
	m := states(t, st)
	if m["sent"] != 2 || m["queued"] != 38 || m["sending"] != 0 {
		t.Errorf("after shutdown: %v; want 2 sent (in flight) and 38 released to queued", m)
	}
	if n := scalar(t, st, `SELECT count(*) FROM deliveries WHERE state = 'queued' AND attempts <> 0`); n != 0 {
		t.Errorf("%d released deliveries had an attempt counted", n)
	}
	// A new worker finishes the rest.
	s2 := newScriptSender(nil)
	start(t, fastConfig(), st, s2)
	waitFor(t, "the rest sent", 10*time.Second, func() bool { return states(t, st)["sent"] == 40 })
	if s.total()+s2.total() != 40 {
		t.Errorf("sent %d + %d, want 40 in all", s.total(), s2.total())
	}
}

func TestNewestUpdateWinsAfterAnOutage(t *testing.T) {
	t.Parallel()
	st := setup(t, 3)
	var down atomic.Bool
	down.Store(true)
	s := newScriptSender(func(string, int) error {
		if down.Load() {
			return &deliver.TransientError{Code: "421", Err: errors.New("service not available")}
		}
		return nil
	})
	cfg := fastConfig()
	cfg.BaseBackoff, cfg.MaxBackoff = 300*time.Millisecond, 300*time.Millisecond
	start(t, cfg, st, s)
	for _, ev := range incidenttest.Updates()[3:6] { // identified, monitoring, update: all atlas-sync
		ingest(t, st, ev)
		time.Sleep(100 * time.Millisecond)
	}
	// Older updates in a retry while the newer ones arrived are superseded
	// when their failed attempt is recorded.
	waitFor(t, "older updates superseded", 10*time.Second, func() bool { return states(t, st)["superseded"] == 6 })
	down.Store(false)
	waitFor(t, "3 sent", 10*time.Second, func() bool { return states(t, st)["sent"] == 3 })
	time.Sleep(500 * time.Millisecond)
	for i := range 3 {
		to := fmt.Sprintf("user%d@example.org", i)
		s.mu.Lock()
		got := s.accepted[to]
		s.mu.Unlock()
		if len(got) != 1 || got[0] != incidenttest.Updates()[5].ID {
			t.Errorf("%s received %v, want only the newest update %s", to, got, incidenttest.Updates()[5].ID)
		}
	}
	if m := states(t, st); m["superseded"] != 6 {
		t.Errorf("states %v, want 6 superseded", m)
	}
}

func TestPanicInSendFailsThatDeliveryOnly(t *testing.T) {
	t.Parallel()
	st := setup(t, 5)
	ingest(t, st, incidenttest.Updates()[0])
	s := newScriptSender(func(to string, _ int) error {
		if to == "user2@example.org" {
			panic("boom")
		}
		return nil
	})
	start(t, fastConfig(), st, s)
	waitFor(t, "4 sent, 1 failed", 10*time.Second, func() bool {
		m := states(t, st)
		return m["sent"] == 4 && m["failed"] == 1
	})
	if n := scalar(t, st, `SELECT count(*) FROM deliveries WHERE address = 'user2@example.org' AND error_code = 'panic'`); n != 1 {
		t.Error("panicking delivery not recorded as a panic failure")
	}
}

// batchSender is a scriptSender that also takes batches, and records their
// sizes.
type batchSender struct {
	*scriptSender
	sizes []int
}

func (b *batchSender) SendBatch(ctx context.Context, ms []deliver.Message) []deliver.SendResult {
	b.mu.Lock()
	b.sizes = append(b.sizes, len(ms))
	b.mu.Unlock()
	res := make([]deliver.SendResult, len(ms))
	for i, m := range ms {
		res[i].ProviderID, res[i].Err = b.Send(ctx, m)
	}
	return res
}

// Deliveries already waiting for a sender go to the provider together, up
// to SendBatch; each gets its own outcome.
func TestWaitingDeliveriesAreSentTogether(t *testing.T) {
	t.Parallel()
	st := setup(t, 30)
	ingest(t, st, incidenttest.Updates()[0])
	s := &batchSender{scriptSender: newScriptSender(func(to string, _ int) error {
		if to == "user7@example.org" {
			return deliver.Permanent("550", errors.New("550 no such user"))
		}
		return nil
	})}
	cfg := fastConfig()
	cfg.Concurrency = 1
	cfg.BatchSize = 30
	cfg.SendBatch = 4
	// The first send waits until the rest of the claimed batch is queued
	// behind it.
	s.block = make(chan struct{})
	start(t, cfg, st, s)
	waitFor(t, "the first send", 5*time.Second, func() bool { return s.started.Load() == 1 })
	time.Sleep(200 * time.Millisecond)
	s.mu.Lock()
	close(s.block)
	s.block = nil
	s.mu.Unlock()
	waitFor(t, "29 sent, 1 failed", 10*time.Second, func() bool {
		m := states(t, st)
		return m["sent"] == 29 && m["failed"] == 1
	})
	if n := scalar(t, st, `SELECT count(*) FROM deliveries WHERE address = 'user7@example.org' AND state = 'failed' AND error_code = '550'`); n != 1 {
		t.Error("the refused delivery of a batch did not fail on its own")
	}
	if n := scalar(t, st, `SELECT count(DISTINCT provider_id) FROM deliveries WHERE state = 'sent'`); n != 29 {
		t.Errorf("%d distinct provider ids for 29 sent", n)
	}
	s.mu.Lock()
	sizes := slices.Clone(s.sizes)
	s.mu.Unlock()
	if len(sizes) < 2 || slices.Max(sizes) != 4 || sizes[1] != 4 {
		t.Errorf("batch sizes %v, want batches of up to 4, the second full", sizes)
	}
	if s.total() != 29 {
		t.Errorf("accepted %d, want 29", s.total())
	}
}
