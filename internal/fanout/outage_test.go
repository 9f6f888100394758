package fanout_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/fanout"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/natstest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
	"github.com/crier-dev/crier/internal/testkit/tcpproxy"

	"github.com/nats-io/nats.go/jetstream"
)

func TestEventWaitsForPostgreSQLToComeBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := tcpproxy.New(t, u.Host)
	u.Host = proxy.Addr()
	st, err := store.Open(ctx, u.String(), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := example.Load(ctx, st, example.Components(), example.Subscribers()); err != nil {
		t.Fatal(err)
	}

	ns := natstest.New(t)
	nc, err := stream.Connect(ns.URL(), "test", stream.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	cons, err := stream.Ensure(ctx, js, stream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- fanout.New(fanout.Config{RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 300 * time.Millisecond}, st, quietLog(), nil).Run(runCtx, cons)
	}()
	t.Cleanup(func() { cancel(); <-done })

	proxy.SetDown(true)
	ev := incidenttest.Updates()[0]
	if _, err := stream.Publish(ctx, js, ev, incidenttest.Raw(ev)); err != nil {
		t.Fatal(err)
	}
	// The consumer must try, fail and ask for redelivery while PostgreSQL
	// is unreachable.
	waitFor(t, "a failed delivery attempt", 10*time.Second, func() (bool, error) {
		info, err := cons.Info(ctx)
		return err == nil && info.NumRedelivered > 0 || err == nil && info.Delivered.Consumer >= 2, err
	})
	proxy.SetDown(false)

	waitFor(t, "the event to be fanned out", 20*time.Second, func() (bool, error) {
		var n int
		err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE event_id = $1`, ev.ID).Scan(&n)
		return n > 0, err
	})
	waitFor(t, "the message to be acknowledged", 10*time.Second, func() (bool, error) {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0, err
	})
}
