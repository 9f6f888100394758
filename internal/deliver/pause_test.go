package deliver_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/crier-dev/crier/internal/deliver"
	"github.com/crier-dev/crier/internal/metrics"
	"github.com/crier-dev/crier/internal/testkit/incidenttest"
	"github.com/crier-dev/crier/internal/testkit/proctest"
)

// TestChannelFaultPausesAndResumes: while the sender reports a fault of
// crier's own configuration (AUTH refused), no delivery fails or uses an
// attempt; the worker says so once, crier_channel_up is 0, the channel is
// probed one delivery at a time with backoff, and once the fault is fixed
// it resumes by itself, says so once, and sends everything.
func TestChannelFaultPausesAndResumes(t *testing.T) {
	t.Parallel()
	st := setup(t, 20)
	ingest(t, st, incidenttest.Updates()[0])
	var broken atomic.Bool
	broken.Store(true)
	s := newScriptSender(func(string, int) error {
		if broken.Load() {
			return &deliver.ChannelFault{Code: "535", Err: errors.New("SMTP AUTH failed: 535 5.7.8 Authentication failed")}
		}
		return nil
	})
	logs := &proctest.Output{}
	m := metrics.New()
	w, err := deliver.NewWorker(fastConfig(), st, s, subjectComposer{}, slog.New(slog.NewTextHandler(logs, nil)), m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	up := func() float64 { return testutil.ToFloat64(m.ChannelUp.WithLabelValues(deliver.ChannelEmail)) }
	waitFor(t, "the channel to pause", 5*time.Second, func() bool { return !w.Status().Up })
	// The first claim's deliveries come back; then one probe a second or
	// slower. Give it time for two probes.
	time.Sleep(2500 * time.Millisecond)
	calls := int(s.started.Load())
	if st := w.Status(); st.Up || !strings.Contains(st.Cause, "535") || st.Since.IsZero() {
		t.Errorf("status while paused: %+v", st)
	}
	if up() != 0 {
		t.Errorf("crier_channel_up = %v while paused, want 0", up())
	}
	if n := scalar(t, st, `SELECT count(*) FROM deliveries WHERE state <> 'queued' OR attempts <> 0`); n != 0 {
		t.Errorf("%d deliveries failed, sent or charged an attempt while the channel was paused", n)
	}
	// The first claims (2 claimers, BatchSize 10), one more claim that
	// asked the pause before the first fault reached it (it takes what the
	// first claims had released: seen on a loaded machine), and a few
	// probes. Without the pause each of the 20 would be tried until its
	// attempts ran out (8 each, 50-200 ms apart): 160 sends.
	if calls > 3*10+3 {
		t.Errorf("%d sends in 2.5 s of a paused channel, want the first claim and one probe at a time", calls)
	}
	broken.Store(false)
	waitFor(t, "all sent after the fix", 15*time.Second, func() bool { return states(t, st)["sent"] == 20 })
	if up() != 1 || !w.Status().Up {
		t.Errorf("after the fix: crier_channel_up %v, status %+v", up(), w.Status())
	}
	out := logs.String()
	if p, r := strings.Count(out, "channel paused"), strings.Count(out, "channel resumed"); p != 1 || r != 1 {
		t.Errorf("%d 'channel paused' and %d 'channel resumed' lines, want one each:\n%s", p, r, out)
	}
	if !strings.Contains(out, "level=WARN msg=\"channel paused") || !strings.Contains(out, "535") {
		t.Errorf("the pause is not one WARN line naming the cause:\n%s", out)
	}
}
