// Package fanout consumes events from the JetStream consumer crier-fanout,
// admits them (package intake: decode, validate, record a rejection), and
// stores each valid one with its deliveries in PostgreSQL.
//
// Every message ends in exactly one reply: Ack after the fan-out (or the
// rejection record) is committed; NakWithDelay when PostgreSQL is
// unavailable, so the event comes back later and is never lost; Nak without
// delay when this process is shutting down, so another takes it at once.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/crier-dev/crier/internal/event"
	"github.com/crier-dev/crier/internal/intake"
	"github.com/crier-dev/crier/internal/metrics"
	"github.com/crier-dev/crier/internal/store"
)

// DefaultWorkers is the number of events fanned out at once when
// Config.Workers is zero (and when CRIER_FANOUT_WORKERS is not set).
const DefaultWorkers = 4

// Config tunes the consumer.
type Config struct {
	// Workers is the number of messages fanned out concurrently (default
	// DefaultWorkers).
	Workers int
	// RetryDelay is the first delay before a message is redelivered after a
	// database failure; it doubles per delivery up to MaxRetryDelay
	// (defaults 1s and 30s).
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// ProgressEvery is how often a long fan-out tells JetStream it is still
	// working (default 10s; keep it below the consumer's AckWait).
	ProgressEvery time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// EscalateAfter, when set, gives for an event how long after an incident's
	// first update a home that has not acknowledged is escalated (0: never);
	// the fan-out schedules those steps (store.ScheduleEscalations).
	EscalateAfter func(ev event.Event) time.Duration
}

// WithDefaults fills in zero fields.
func (c Config) WithDefaults() Config {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = time.Second
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = 30 * time.Second
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Consumer fans events out.
type Consumer struct {
	cfg     Config
	store   *store.Store
	intake  *intake.Intake
	log     *slog.Logger
	metrics *metrics.Metrics
}

// New returns a Consumer. m may be nil.
func New(cfg Config, st *store.Store, log *slog.Logger, m *metrics.Metrics) *Consumer {
	if m == nil {
		m = metrics.New()
	}
	cfg = cfg.WithDefaults()
	return &Consumer{cfg: cfg, store: st, intake: intake.New(st, m, cfg.Now), log: log, metrics: m}
}

// Run pulls messages from cons until ctx is cancelled, then stops pulling,
// lets in-flight fan-outs finish (their database work is not cancelled) and
// returns.
func (c *Consumer) Run(ctx context.Context, cons jetstream.Consumer) error {
	return c.Serve(ctx, context.WithoutCancel(ctx), cons)
}

// Serve is Run with a second context: cancelling hard also cuts short the
// fan-outs in flight (a shutdown whose grace is over). A fan-out cut short
// is not acknowledged; JetStream redelivers it and it resumes where its
// committed chunks end.
func (c *Consumer) Serve(ctx, hard context.Context, cons jetstream.Consumer) error {
	msgs := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() {
			for msg := range msgs {
				c.handle(ctx, hard, msg)
			}
		})
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case msgs <- msg:
		case <-ctx.Done():
			// Shutting down: hand it back for another process.
			_ = msg.Nak()
		}
	}, jetstream.PullMaxMessages(2*c.cfg.Workers), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) || ctx.Err() == nil {
			c.log.WarnContext(ctx, "fan-out consumer", "error", err)
		}
	}))
	if err != nil {
		close(msgs)
		wg.Wait()
		return fmt.Errorf("consume events: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	close(msgs)
	wg.Wait()
	return nil
}

// Handle processes one message and replies to it. It is exported for tests
// and benchmarks that drive the consumer by hand.
func (c *Consumer) Handle(ctx context.Context, msg jetstream.Msg) {
	c.handle(ctx, context.WithoutCancel(ctx), msg)
}

// handle processes one message; its database work runs on hard, so that
// shutdown (ctx) does not cut a started fan-out short.
func (c *Consumer) handle(ctx, hard context.Context, msg jetstream.Msg) {
	var streamSeq uint64
	var delivered uint64 = 1
	if md, err := msg.Metadata(); err == nil {
		streamSeq = md.Sequence.Stream
		delivered = md.NumDelivered
	}
	// The database work must not be cut short by shutdown: a fan-out that
	// started is finished and acknowledged.
	err := c.process(hard, msg, streamSeq)
	if err == nil {
		if err := msg.Ack(); err != nil {
			c.log.WarnContext(ctx, "ack event", "stream_seq", streamSeq, "error", err)
		}
		return
	}
	delay := c.cfg.RetryDelay << min(delivered-1, 16)
	delay = min(delay, c.cfg.MaxRetryDelay)
	c.log.ErrorContext(ctx, "fan-out failed, will retry", "stream_seq", streamSeq, "delivered", delivered, "retry_in", delay, "error", err)
	if err := msg.NakWithDelay(delay); err != nil {
		c.log.WarnContext(ctx, "nak event", "stream_seq", streamSeq, "error", err)
	}
}

// process validates and stores one event. A nil error means the outcome
// (fan-out or rejection) is committed; an error means try again later.
func (c *Consumer) process(ctx context.Context, msg jetstream.Msg, streamSeq uint64) error {
	raw := msg.Data()
	ev, verr, err := c.intake.Admit(ctx, raw, intake.Source{Via: "stream", Subject: msg.Subject(), StreamSeq: streamSeq})
	if verr != nil {
		if err == nil {
			c.log.WarnContext(ctx, "event rejected", "stream_seq", streamSeq, "field", verr.Field, "reason", verr.Reason)
		}
		return err
	}
	if err != nil {
		return err
	}

	stop := c.progress(ctx, msg)
	start := time.Now()
	res, err := c.store.Ingest(ctx, ev, raw, streamSeq)
	stop()
	if err != nil {
		return err
	}
	// Also for a duplicate: a fan-out that stored the event but died
	// before scheduling comes back as one. Scheduling is idempotent.
	if c.cfg.EscalateAfter != nil {
		if err := c.store.ScheduleEscalations(ctx, ev, c.cfg.EscalateAfter(ev)); err != nil {
			return err
		}
	}
	if res.Duplicate {
		c.metrics.EventsDuplicate.Inc()
		c.log.InfoContext(ctx, "event already stored", "event_id", ev.ID, "stream_seq", streamSeq)
		return nil
	}
	took := time.Since(start)
	c.metrics.EventsFannedOut.Inc()
	c.metrics.FanoutDuration.Observe(took.Seconds())
	for ch, n := range res.Queued {
		c.metrics.DeliveriesQueued.WithLabelValues(ch, "queued").Add(float64(n))
	}
	for ch, n := range res.Superseded {
		c.metrics.DeliveriesQueued.WithLabelValues(ch, "superseded").Add(float64(n))
	}
	var supersededNew int64
	for _, n := range res.Superseded {
		supersededNew += n
	}
	c.log.InfoContext(ctx, "event fanned out",
		"event_id", ev.ID, "incident_id", ev.IncidentID, "status", ev.Status, "notify", ev.Notify,
		"stream_seq", streamSeq, "queued_email", res.Queued["email"], "queued_sms", res.Queued["sms"],
		"queued_destinations", res.Queued["webhook"]+res.Queued["teams"]+res.Queued["slack"],
		"superseded_new", supersededNew, "superseded_older", res.Replaced,
		"duration", took)
	return nil
}

// progress tells JetStream the message is still being worked on until the
// returned stop function is called.
func (c *Consumer) progress(ctx context.Context, msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(c.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					c.log.WarnContext(ctx, "extend ack deadline", "error", err)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
