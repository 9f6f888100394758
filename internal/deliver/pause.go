package deliver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crier-dev/crier/internal/redact"
)

// Probe backoff of a paused channel: the first probe a second after the
// fault, then twice as long each time, up to a minute.
const (
	firstProbe = time.Second
	maxProbe   = time.Minute
)

// ChannelStatus is whether a worker's channel sends, and if not, why.
type ChannelStatus struct {
	Channel string
	Up      bool
	// While paused: the fault, when it began, and when the channel is next
	// probed with one delivery.
	Cause     string
	Since     time.Time
	NextProbe time.Time
}

// pause is a worker's channel state: up, or paused by a ChannelFault and
// probing with backoff.
type pause struct {
	paused    atomic.Bool // fault != nil, read without the lock on every send
	mu        sync.Mutex
	fault     *ChannelFault // nil while up
	since     time.Time
	nextProbe time.Time
	backoff   time.Duration
}

// Status returns the channel's state, for the admin dashboard.
func (w *Worker) Status() ChannelStatus {
	p := &w.pause
	p.mu.Lock()
	defer p.mu.Unlock()
	st := ChannelStatus{Channel: w.cfg.Channel, Up: p.fault == nil}
	if p.fault != nil {
		// The cause can name the recipient of the send that found the
		// fault: mask it, as reports do.
		st.Cause, st.Since, st.NextProbe = redact.String(p.fault.Error()), p.since, p.nextProbe
	}
	return st
}

// faulted pauses the channel on f. Only the first fault of a pause is
// logged; later ones (the deliveries already claimed, failed probes) are
// the same fault.
func (w *Worker) faulted(ctx context.Context, f *ChannelFault) {
	p := &w.pause
	p.mu.Lock()
	first := p.fault == nil
	if first {
		p.since, p.backoff = time.Now(), firstProbe
		p.nextProbe = p.since.Add(p.backoff)
	}
	p.fault = f
	p.paused.Store(true)
	p.mu.Unlock()
	if first {
		w.metrics.ChannelUp.WithLabelValues(w.cfg.Channel).Set(0)
		w.log.WarnContext(ctx, "channel paused: a fault of crier's configuration or provider account; deliveries stay queued and the channel is probed until it works",
			"channel", w.cfg.Channel, "code", f.Code, "cause", f.Error())
	}
}

// sent resumes a paused channel after a successful send.
func (w *Worker) sent(ctx context.Context) {
	p := &w.pause
	if !p.paused.Load() {
		return
	}
	p.mu.Lock()
	was, since := p.fault, p.since
	p.fault = nil
	p.paused.Store(false)
	p.mu.Unlock()
	if was != nil {
		w.metrics.ChannelUp.WithLabelValues(w.cfg.Channel).Set(1)
		w.log.WarnContext(ctx, "channel resumed", "channel", w.cfg.Channel, "paused_for", time.Since(since).Round(time.Millisecond).String(), "cause", was.Error())
	}
}

// probe says how many deliveries the next claim may take: all of limit
// while the channel is up; while it is paused, one (the probe) once its
// time has come, and the time is moved on by the backoff, which doubles.
// wait is how long to wait before asking again when the answer is 0.
func (w *Worker) probe(limit int) (n int, wait time.Duration) {
	p := &w.pause
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == nil {
		return limit, 0
	}
	if now := time.Now(); now.Before(p.nextProbe) {
		return 0, p.nextProbe.Sub(now)
	}
	p.backoff = min(2*p.backoff, maxProbe)
	p.nextProbe = time.Now().Add(p.backoff)
	return 1, 0
}
