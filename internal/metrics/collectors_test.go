package metrics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/crier-dev/crier/internal/example"
	"github.com/crier-dev/crier/internal/metrics"
	"github.com/crier-dev/crier/internal/store"
	"github.com/crier-dev/crier/internal/stream"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/natstest"
	"github.com/crier-dev/crier/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// gather collects c through a registry (which also checks its Describe
// against what it collects) and returns each sample by name and labels.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			out[f.GetName()+labels(m)] = m.GetGauge().GetValue()
		}
	}
	return out
}

func labels(m *dto.Metric) string {
	s := ""
	for _, l := range m.GetLabel() {
		if s != "" {
			s += ","
		}
		s += l.GetName() + "=" + l.GetValue()
	}
	if s == "" {
		return ""
	}
	return "{" + s + "}"
}

func TestQueueCollector(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := pgtest.NewStore(t)
	c := metrics.NewQueueCollector(st)

	got := gather(t, c)
	for _, k := range []string{"crier_queue_depth{channel=email}", "crier_queue_depth{channel=sms}", "crier_queue_oldest_age_seconds{channel=email}"} {
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("empty ledger: %s = %v (present %t), want 0", k, v, ok)
		}
	}
	if got["crier_queue_stats_up"] != 1 {
		t.Errorf("crier_queue_stats_up = %v, want 1", got["crier_queue_stats_up"])
	}

	if err := example.Load(ctx, st, example.Components(), example.Subscribers()); err != nil {
		t.Fatal(err)
	}
	ev := incidenttest.Updates()[0]
	if _, err := st.Ingest(ctx, ev, incidenttest.Raw(ev), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE deliveries SET queued_at = now() - interval '90 seconds' WHERE channel = 'sms'`); err != nil {
		t.Fatal(err)
	}
	got = gather(t, c)
	if got["crier_queue_depth{channel=email}"] != 2 || got["crier_queue_depth{channel=sms}"] != 1 {
		t.Errorf("depth: %v", got)
	}
	if age := got["crier_queue_oldest_age_seconds{channel=sms}"]; age < 89 || age > 300 {
		t.Errorf("sms oldest age %v s, want about 90", age)
	}
}

type failingQueue struct{}

func (failingQueue) QueueStats(context.Context) ([]store.QueueStat, error) {
	return nil, errors.New("connection refused")
}

// A database outage must not fail the scrape: only the up gauge says so.
func TestQueueCollectorDown(t *testing.T) {
	t.Parallel()
	got := gather(t, metrics.NewQueueCollector(failingQueue{}))
	if len(got) != 1 || got["crier_queue_stats_up"] != 0 {
		t.Errorf("got %v, want only crier_queue_stats_up 0", got)
	}
}

func TestConsumerCollector(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := natstest.New(t)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.Ensure(ctx, js, stream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := metrics.NewConsumerCollector(cons, stream.DefaultStream, stream.DefaultConsumer)
	const lbl = "{consumer=crier-fanout,stream=INCIDENTS}"

	got := gather(t, c)
	if got["crier_jetstream_consumer_up"] != 1 || got["crier_jetstream_consumer_pending_messages"+lbl] != 0 {
		t.Errorf("empty stream: %v", got)
	}

	for _, ev := range incidenttest.Updates()[:3] {
		if _, err := stream.Publish(ctx, js, ev, incidenttest.Raw(ev)); err != nil {
			t.Fatal(err)
		}
	}
	// JetStream counts a stored message into the consumer's pending
	// shortly after it acknowledges the publish: read until it has.
	settled := func(pending, ackPending float64) map[string]float64 {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := gather(t, c)
			if got["crier_jetstream_consumer_pending_messages"+lbl] == pending && got["crier_jetstream_consumer_ack_pending_messages"+lbl] == ackPending ||
				time.Now().After(deadline) {
				return got
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	got = settled(3, 0)
	if got["crier_jetstream_consumer_pending_messages"+lbl] != 3 || got["crier_jetstream_consumer_ack_pending_messages"+lbl] != 0 {
		t.Errorf("three published: %v", got)
	}

	// Fetch two without acknowledging them: they move to ack pending.
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != 2 {
		t.Fatalf("fetched %d, want 2", n)
	}
	got = settled(1, 2)
	if got["crier_jetstream_consumer_pending_messages"+lbl] != 1 || got["crier_jetstream_consumer_ack_pending_messages"+lbl] != 2 {
		t.Errorf("two fetched: %v", got)
	}

	// With NATS gone the scrape still succeeds and says so.
	ns.Stop()
	got = gather(t, c)
	if len(got) != 1 || got["crier_jetstream_consumer_up"] != 0 {
		t.Errorf("NATS stopped: got %v, want only crier_jetstream_consumer_up 0", got)
	}
}
