package serve_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/config"
	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/serve"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/natstest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// crier is one in-process `crier serve` for a test.
type crier struct {
	store   *store.Store
	js      jetstream.JetStream
	baseURL string
	subs    map[string]int64
	stop    func()
}

type subscriber struct {
	label string
	store.NewSubscriber
	optOutSMS, optOutEmail bool
}

// start runs serve.Run with env (CRIER_* variables; the database, NATS and
// HTTP settings are filled in) against a fresh database holding the example
// catalog and subs, and an embedded NATS server.
func start(t *testing.T, env map[string]string, subs []subscriber, opts serve.Options) *crier {
	t.Helper()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	ns := natstest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	vars := map[string]string{
		"CRIER_DATABASE_URL": dbURL,
		"CRIER_NATS_URL":     ns.URL(),
		"CRIER_HTTP_ADDR":    ln.Addr().String(),
		"CRIER_PUBLIC_URL":   base,
		"CRIER_MAIL_FROM":    "Status <status@crier.example>",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	c := &crier{store: pgtest.NewStore(t), baseURL: base, subs: map[string]int64{}}
	c.store.Close()
	st, err := store.Open(ctx, dbURL, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	c.store = st
	if err := example.Load(ctx, st, example.Components(), nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		id, err := st.CreateSubscriber(ctx, s.NewSubscriber)
		if err != nil {
			t.Fatal(err)
		}
		c.subs[s.label] = id
		if s.optOutSMS {
			if err := st.OptOut(ctx, id, "sms"); err != nil {
				t.Fatal(err)
			}
		}
		if s.optOutEmail {
			if err := st.OptOut(ctx, id, "email"); err != nil {
				t.Fatal(err)
			}
		}
	}

	opts.Listener = ln
	if opts.Deliver == nil {
		opts.Deliver = func(c *deliver.Config) {
			c.BaseBackoff, c.MaxBackoff = 100*time.Millisecond, 400*time.Millisecond
			c.PollInterval = 50 * time.Millisecond
		}
	}
	ready := make(chan struct{})
	opts.Ready = func(string) { close(ready) }
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() { done <- serve.Run(runCtx, cfg, log, opts) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve.Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not become ready")
	}
	var once sync.Once
	c.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve.Run: %v", err)
			}
		})
	}
	t.Cleanup(c.stop)

	nc, err := stream.Connect(ns.URL(), "test publisher", stream.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *crier) publish(t *testing.T, ev event.Event) {
	t.Helper()
	if _, err := stream.Publish(context.Background(), c.js, ev, incidenttest.Raw(ev)); err != nil {
		t.Fatal(err)
	}
}

// states counts the deliveries of an event (or all, for "") by channel/state.
func (c *crier) states(t *testing.T, eventID string) map[string]int {
	t.Helper()
	rows, err := c.store.Pool().Query(context.Background(),
		`SELECT channel || '/' || state, count(*) FROM deliveries WHERE $1 = '' OR event_id = $1 GROUP BY 1`, eventID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

// waitSettled waits until the event is stored and none of its deliveries is
// queued or sending.
func (c *crier) waitSettled(t *testing.T, eventID string) map[string]int {
	t.Helper()
	var m map[string]int
	waitFor(t, "deliveries of "+eventID+" to settle", 30*time.Second, func() bool {
		var stored bool
		if err := c.store.Pool().QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM events WHERE id = $1 AND fanned_out_at IS NOT NULL)`, eventID).Scan(&stored); err != nil || !stored {
			return false
		}
		m = c.states(t, eventID)
		return m["email/queued"]+m["email/sending"]+m["sms/queued"]+m["sms/sending"] == 0
	})
	return m
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func has(s string, subs ...string) error {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return fmt.Errorf("missing %q", sub)
		}
	}
	return nil
}
