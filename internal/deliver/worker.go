package deliver

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crier-dev/crier/internal/metrics"
	"github.com/crier-dev/crier/internal/store"
)

// Sender sends one message on one channel and returns the provider's id for
// it. Errors are *PermanentError, *TransientError, or anything else
// (treated as transient).
type Sender interface {
	Send(ctx context.Context, m Message) (providerID string, err error)
}

// BatchSender is a Sender that can also hand the provider several messages
// in one exchange. SendBatch returns one result per message, in order, each
// as Send would have returned it.
type BatchSender interface {
	Sender
	SendBatch(ctx context.Context, ms []Message) []SendResult
}

// SendResult is the outcome of one message of a batch.
type SendResult struct {
	ProviderID string
	Err        error
}

// Composer turns a claimed delivery into the message to send. It is called
// for every delivery, so it should cache per-event work.
type Composer interface {
	Compose(ctx context.Context, d store.Claimed) (Message, error)
}

// Defaults applied by Config.WithDefaults; cmd/crier's configuration
// (package config) takes its CRIER_* defaults from these.
const (
	DefaultConcurrency       = 32
	DefaultBatchSize         = 200
	DefaultLease             = 2 * time.Minute
	DefaultSendTimeout       = 30 * time.Second
	DefaultMaxAttempts       = 8
	DefaultMaxAge            = time.Hour
	DefaultBaseBackoff       = 5 * time.Second
	DefaultMaxBackoff        = 10 * time.Minute
	DefaultPollInterval      = 500 * time.Millisecond
	DefaultRecordConcurrency = 4
	DefaultClaimers          = 2
	DefaultSendBatch         = 4
	DefaultFlushInterval     = 50 * time.Millisecond
)

// Config tunes the workers of one channel. Zero fields take the Default*
// values above.
type Config struct {
	Channel string // one of the Channel* names; required
	// Concurrency is the number of sends in flight.
	Concurrency int
	// BatchSize is the most deliveries claimed in one statement.
	BatchSize int
	// Lease is how long a claimed delivery stays with this worker before
	// another may take it.
	Lease time.Duration
	// SendTimeout bounds one send.
	SendTimeout time.Duration
	// MaxAttempts is the number of attempts before a delivery fails.
	MaxAttempts int
	// MaxAge is how long after fan-out a delivery may still be sent; older
	// ones fail as expired.
	MaxAge time.Duration
	// BaseBackoff and MaxBackoff shape the exponential backoff with jitter
	// between attempts.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// PollInterval is how often the queue is checked without a wake-up;
	// retries become due this way.
	PollInterval time.Duration
	// RecordConcurrency is how many outcome batches may be written at once.
	RecordConcurrency int
	// Claimers is how many claim statements may run at once.
	Claimers int
	// SendBatch is the most deliveries one sender hands the provider in one
	// exchange, when the Sender is a BatchSender: those already waiting
	// join the send, none is waited for. Rate-limited channels send one at
	// a time.
	SendBatch int
	// FlushInterval bounds how long an outcome waits to be written with
	// others. Longer means fuller batches and fewer statements (at 5,000
	// sends/s, 50ms fills a batch of 200); shorter means fewer sends
	// repeated when the process dies before writing them.
	FlushInterval time.Duration
	// RatePerSecond, when positive, paces the channel for the whole
	// deployment: every process's claims take tokens from one bucket in
	// PostgreSQL (store.ClaimPaced), so nothing claimed waits for its turn.
	// Zero means unlimited, and the claims touch no bucket.
	RatePerSecond float64
}

// WithDefaults fills in zero fields.
func (c Config) WithDefaults() Config {
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	num := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	num(&c.Concurrency, DefaultConcurrency)
	num(&c.BatchSize, DefaultBatchSize)
	num(&c.MaxAttempts, DefaultMaxAttempts)
	num(&c.RecordConcurrency, DefaultRecordConcurrency)
	num(&c.Claimers, DefaultClaimers)
	num(&c.SendBatch, DefaultSendBatch)
	dur(&c.Lease, DefaultLease)
	dur(&c.SendTimeout, DefaultSendTimeout)
	dur(&c.MaxAge, DefaultMaxAge)
	dur(&c.BaseBackoff, DefaultBaseBackoff)
	dur(&c.MaxBackoff, DefaultMaxBackoff)
	dur(&c.PollInterval, DefaultPollInterval)
	dur(&c.FlushInterval, DefaultFlushInterval)
	if c.RatePerSecond > 0 {
		// A paced claim takes at most the bucket's burst, one second's
		// worth; room for more would only be reserved and not used. One
		// claimer: more would queue on the bucket's lock.
		c.BatchSize = max(1, min(c.BatchSize, int(math.Ceil(c.RatePerSecond))))
		c.Claimers = 1
	}
	return c
}

func (c Config) validate() error {
	switch c.Channel {
	case ChannelEmail, ChannelSMS, ChannelWebhook, ChannelTeams, ChannelSlack:
	default:
		return fmt.Errorf("deliver: unknown channel %q", c.Channel)
	}
	return nil
}

// Worker sends the queued deliveries of one channel.
type Worker struct {
	cfg      Config
	store    *store.Store
	sender   Sender
	composer Composer
	log      *slog.Logger
	metrics  *metrics.Metrics
	owner    string
	wake     chan struct{}
	pause    pause
	// recordedSent is set when sends were recorded since applyKeptLoop
	// last looked.
	recordedSent atomic.Bool
}

// NewWorker returns a worker for cfg.Channel. m may be nil.
func NewWorker(cfg Config, st *store.Store, sender Sender, composer Composer, log *slog.Logger, m *metrics.Metrics) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = metrics.New()
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	m.ChannelUp.WithLabelValues(cfg.Channel).Set(1)
	return &Worker{
		cfg: cfg, store: st, sender: sender, composer: composer, log: log, metrics: m,
		owner: cfg.Channel + "-" + hex.EncodeToString(b),
		wake:  make(chan struct{}, 1),
	}, nil
}

// Wake tells the worker that deliveries were queued. It never blocks.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

type job struct {
	d     store.Claimed
	start time.Time
}

// Run claims and sends until ctx is cancelled. Then it stops claiming,
// releases the deliveries it claimed but did not start, lets sends in flight
// finish (each bounded by SendTimeout), records every outcome and returns.
func (w *Worker) Run(ctx context.Context) error {
	return w.Serve(ctx, context.WithoutCancel(ctx))
}

// Serve is Run with a second context: cancelling ctx stops the worker as
// Run does, and cancelling hard also cuts short the claims and sends in
// flight (a shutdown whose grace is over). Outcomes are recorded even
// then; what was cut short goes back to the queue as a retry.
func (w *Worker) Serve(ctx, hard context.Context) error {
	// Each claimer reserves room for one claim before making it. Unpaced,
	// one claim more may wait for the senders, so that they never run dry
	// while a claim is in flight (without it, 100,000 x both took 5 % longer);
	// paced, one claim is a second's worth and nothing more is held.
	room := w.cfg.BatchSize * w.cfg.Claimers
	if w.cfg.RatePerSecond == 0 {
		room += w.cfg.BatchSize
	}
	jobs := newJobQueue(room)
	outcomes := make(chan store.Outcome, w.cfg.Concurrency)
	var senders sync.WaitGroup
	batch := 1
	if _, ok := w.sender.(BatchSender); ok {
		batch = w.cfg.SendBatch
	}
	for range w.cfg.Concurrency {
		senders.Go(func() {
			js := make([]job, 0, batch)
			outs := make([]store.Outcome, batch)
			for {
				j, ok := jobs.pop()
				if !ok {
					return
				}
				// Whatever else is already waiting joins this send, up
				// to the batch size: nothing waits for a batch to fill.
				js = append(js[:0], j)
				for len(js) < batch {
					j, ok := jobs.tryPop()
					if !ok {
						break
					}
					js = append(js, j)
				}
				for _, o := range w.deliver(ctx, hard, js, outs[:len(js)]) {
					outcomes <- o
				}
			}
		})
	}
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		w.recordLoop(outcomes)
	}()
	if w.cfg.Channel == ChannelSMS {
		applied := make(chan struct{})
		defer func() { <-applied }()
		go func() {
			defer close(applied)
			w.applyKeptLoop(recorded)
		}()
	}

	var claimers sync.WaitGroup
	for range w.cfg.Claimers {
		claimers.Go(func() { w.claimLoop(ctx, hard, jobs) })
	}
	claimers.Wait()
	jobs.close()
	senders.Wait()
	close(outcomes)
	<-recorded
	return nil
}

// claimLoop claims batches and hands them to the senders. Several run at
// once (Claimers) so a slow claim statement does not starve the senders.
// A claim also takes the deliveries whose lease expired.
func (w *Worker) claimLoop(ctx, hard context.Context, jobs *jobQueue) {
	poll := time.NewTicker(w.cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		want, wait := w.probe(w.cfg.BatchSize)
		if want == 0 {
			w.wait(ctx, wait) // paused: until the next probe
			continue
		}
		room := jobs.reserve(ctx, want)
		if ctx.Err() != nil {
			jobs.unreserve(room)
			return
		}
		batch, paced, err := w.claim(hard, room)
		jobs.push(batch)
		jobs.unreserve(room - len(batch))
		switch {
		case err != nil:
			if ctx.Err() == nil {
				w.log.WarnContext(ctx, "claim deliveries", "channel", w.cfg.Channel, "error", err)
			}
			w.sleep(ctx, poll.C)
		case paced > 0:
			// The pace, not the queue, ended the claim: wait for the
			// next token, however many deliveries are woken meanwhile.
			// The jitter keeps processes from falling into step, one
			// always claiming just before another and taking it all.
			jitter := time.Duration(mrand.Int64N(int64(minPacedWait)))
			w.wait(ctx, max(paced, minPacedWait/2)+jitter)
		case len(batch) == 0:
			w.sleep(ctx, poll.C)
		}
		if n := reclaimed(batch); n > 0 {
			w.log.InfoContext(ctx, "expired leases reclaimed", "channel", w.cfg.Channel, "count", n)
		}
	}
}

// minPacedWait is about the shortest wait between two claims of a paced
// channel (half of it, plus up to all of it at random): fast paces take
// several tokens a claim rather than one claim per token.
const minPacedWait = 50 * time.Millisecond

// claim claims up to limit deliveries, from the deployment's bucket when
// the channel is paced; paced is then how long until the bucket holds a
// token again, if it ran dry.
//
// The claim must not be cut short by shutdown: a cancelled query can still
// have committed on the server, leaving rows leased that this worker never
// saw. It runs to completion (bounded by SendTimeout, or by the end of the
// grace); a shutdown that began meanwhile finds the claimed deliveries in
// the queue, and the senders release them.
func (w *Worker) claim(hard context.Context, limit int) (batch []store.Claimed, paced time.Duration, err error) {
	ctx, cancel := context.WithTimeout(hard, w.cfg.SendTimeout)
	defer cancel()
	if w.cfg.RatePerSecond > 0 {
		return w.store.ClaimPaced(ctx, w.cfg.Channel, limit, w.owner, w.cfg.Lease, store.ChannelPace(w.cfg.Channel, w.cfg.RatePerSecond))
	}
	batch, err = w.store.Claim(ctx, w.cfg.Channel, limit, w.owner, w.cfg.Lease)
	return batch, 0, err
}

// wait waits for d or cancellation.
func (w *Worker) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// reclaimed counts the deliveries of batch whose earlier lease expired.
func reclaimed(batch []store.Claimed) int {
	n := 0
	for _, d := range batch {
		if d.Reclaimed {
			n++
		}
	}
	return n
}

// sleep waits for a wake-up, the poll tick or cancellation.
func (w *Worker) sleep(ctx context.Context, tick <-chan time.Time) {
	select {
	case <-ctx.Done():
	case <-w.wake:
	case <-tick:
	}
}

// deliver composes and sends the deliveries of js, several in one exchange
// when the sender can, and writes their outcomes to out.
func (w *Worker) deliver(ctx, hard context.Context, js []job, out []store.Outcome) (res []store.Outcome) {
	for i, j := range js {
		out[i] = store.Outcome{ID: j.d.ID, Attempt: j.d.Attempt, StartedAt: j.start}
	}
	defer func() {
		res = out // also after a panic
		if p := recover(); p != nil {
			// Every delivery without an outcome yet fails.
			for i := range out {
				if out[i].Outcome == "" {
					w.log.ErrorContext(ctx, "panic while sending", "channel", w.cfg.Channel, "delivery_id", out[i].ID, "panic", fmt.Sprint(p))
					out[i].Outcome, out[i].ErrorCode, out[i].Error = store.OutcomeFailed, "panic", fmt.Sprintf("panic: %v", p)
				}
			}
		}
		for _, o := range out {
			w.metrics.Deliveries.WithLabelValues(w.cfg.Channel, outcomeLabel(o)).Inc()
		}
	}()
	// Sends in flight finish after shutdown starts; SendTimeout (or the end
	// of the grace, hard) bounds them.
	sendCtx, cancel := context.WithTimeout(hard, w.cfg.SendTimeout)
	defer cancel()
	var msgs []Message
	var sending []int // the index in js of each of msgs
	for i, j := range js {
		d := j.d
		switch {
		case ctx.Err() != nil:
			// Shutting down: a delivery not yet started goes back to the queue.
			out[i].Outcome, out[i].NextAttemptAt = store.OutcomeReleased, time.Now()
		case time.Since(d.QueuedAt) > w.cfg.MaxAge:
			out[i].Outcome, out[i].ErrorCode = store.OutcomeFailed, "expired"
			out[i].Error = fmt.Sprintf("expired: not sent within %s of fan-out", w.cfg.MaxAge)
		default:
			msg, err := w.composer.Compose(sendCtx, d)
			if err != nil {
				out[i] = w.failure(ctx, d, out[i], fmt.Errorf("compose: %w", err))
				break
			}
			msg.Expires = d.QueuedAt.Add(w.cfg.MaxAge)
			msgs, sending = append(msgs, msg), append(sending, i)
		}
	}
	if len(msgs) == 0 {
		return out
	}
	start := time.Now()
	results := w.send(sendCtx, msgs)
	took := time.Since(start).Seconds()
	for k, i := range sending {
		w.metrics.SendDuration.WithLabelValues(w.cfg.Channel).Observe(took)
		if r := results[k]; r.Err != nil {
			out[i] = w.failure(ctx, js[i].d, out[i], r.Err)
		} else {
			out[i].Outcome, out[i].ProviderID = store.OutcomeSent, r.ProviderID
			w.sent(ctx)
		}
	}
	return out
}

// send hands msgs to the sender: in one batch when it takes batches.
func (w *Worker) send(ctx context.Context, msgs []Message) []SendResult {
	if bs, ok := w.sender.(BatchSender); ok && len(msgs) > 1 {
		return bs.SendBatch(ctx, msgs)
	}
	res := make([]SendResult, len(msgs))
	for i, m := range msgs {
		res[i].ProviderID, res[i].Err = w.sender.Send(ctx, m)
	}
	return res
}

func outcomeLabel(o store.Outcome) string {
	if o.ErrorCode == "expired" {
		return "expired"
	}
	return o.Outcome
}

// failure turns a send error into a retry or a permanent failure.
func (w *Worker) failure(ctx context.Context, d store.Claimed, out store.Outcome, err error) store.Outcome {
	out.Error = err.Error()
	var perm *PermanentError
	var trans *TransientError
	var fault *ChannelFault
	code := "network"
	switch {
	case errors.As(err, &fault):
		// Not the delivery's fault: back to the queue, no attempt used.
		w.faulted(ctx, fault)
		w.metrics.ProviderErrors.WithLabelValues(w.cfg.Channel, cmp.Or(fault.Code, "channel")).Inc()
		out.Outcome, out.NextAttemptAt = store.OutcomeReleased, time.Now()
		return out
	case errors.As(err, &perm):
		code = perm.Code
		out.ErrorCode = perm.Code
		out.Outcome = store.OutcomeFailed
		if perm.OptOut {
			if err := w.store.OptOut(context.WithoutCancel(ctx), d.SubscriberID, d.Channel); err != nil {
				w.log.ErrorContext(ctx, "opt out after provider refusal", "delivery_id", d.ID, "error", err)
			}
		}
	case errors.As(err, &trans):
		if trans.Code != "" {
			code = trans.Code
		}
		out.ErrorCode = trans.Code
	}
	if code == "" {
		code = "unknown"
	}
	w.metrics.ProviderErrors.WithLabelValues(w.cfg.Channel, code).Inc()
	if out.Outcome == store.OutcomeFailed {
		return out
	}
	if d.Attempt >= w.cfg.MaxAttempts {
		out.Outcome = store.OutcomeFailed
		out.Error = fmt.Sprintf("gave up after %d attempts: %s", d.Attempt, out.Error)
		return out
	}
	delay := w.backoff(d.Attempt)
	if trans != nil && trans.RetryAfter > delay {
		delay = trans.RetryAfter
	}
	next := time.Now().Add(delay)
	if next.After(d.QueuedAt.Add(w.cfg.MaxAge)) {
		out.Outcome, out.ErrorCode = store.OutcomeFailed, "expired"
		out.Error = fmt.Sprintf("expired: next attempt would be after the maximum age of %s: %s", w.cfg.MaxAge, out.Error)
		return out
	}
	out.Outcome = store.OutcomeRetry
	out.NextAttemptAt = next
	return out
}

// backoff is exponential in the attempt number with "equal jitter": half
// the delay is fixed, half random, so retries of a burst spread out.
func (w *Worker) backoff(attempt int) time.Duration {
	d := w.cfg.BaseBackoff << min(attempt-1, 20)
	if d <= 0 || d > w.cfg.MaxBackoff {
		d = w.cfg.MaxBackoff
	}
	half := d / 2
	return half + time.Duration(mrand.Int64N(int64(half)+1))
}

// keptInterval is how often the SMS worker applies the provider reports
// that came before their sends were recorded (at most one statement a
// second, and only after sends were recorded).
const keptInterval = time.Second

// applyKeptLoop applies kept provider reports (store.ApplyKeptStatuses)
// every keptInterval in which sends were recorded, until done is closed
// (the last outcomes are written), and once more then.
func (w *Worker) applyKeptLoop(done <-chan struct{}) {
	ctx := context.Background()
	apply := func() {
		if !w.recordedSent.Swap(false) {
			return
		}
		if _, err := w.store.ApplyKeptStatuses(ctx); err != nil {
			w.log.WarnContext(ctx, "apply kept provider statuses", "channel", w.cfg.Channel, "error", err)
		}
	}
	tick := time.NewTicker(keptInterval)
	defer tick.Stop()
	for {
		select {
		case <-done:
			apply()
			return
		case <-tick.C:
			apply()
		}
	}
}

// recordLoop writes outcomes in batches: when FlushInterval has passed or a
// batch is full. Up to RecordConcurrency batches are written at once so the
// senders never wait behind one slow statement. A failed write is retried
// until it succeeds or the lease would have expired anyway (then the
// deliveries are sent again: at least once).
func (w *Worker) recordLoop(outcomes <-chan store.Outcome) {
	var writers sync.WaitGroup
	defer writers.Wait()
	slots := make(chan struct{}, w.cfg.RecordConcurrency)
	var pending []store.Outcome
	flush := func() {
		if len(pending) == 0 {
			return
		}
		batch := pending
		pending = make([]store.Outcome, 0, w.cfg.BatchSize)
		slots <- struct{}{}
		writers.Go(func() {
			defer func() { <-slots }()
			w.record(batch)
		})
	}
	timer := time.NewTimer(w.cfg.FlushInterval)
	defer timer.Stop()
	for {
		select {
		case o, ok := <-outcomes:
			if !ok {
				flush()
				return
			}
			if len(pending) == 0 {
				timer.Reset(w.cfg.FlushInterval)
			}
			pending = append(pending, o)
			if len(pending) >= w.cfg.BatchSize {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// record writes one batch of outcomes, retrying while the lease lasts.
func (w *Worker) record(batch []store.Outcome) {
	ctx := context.Background()
	deadline := time.Now().Add(w.cfg.Lease)
	for attempt := 0; ; attempt++ {
		_, err := w.store.Record(ctx, w.owner, batch)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			w.log.ErrorContext(ctx, "record outcomes: giving up, leases will expire", "channel", w.cfg.Channel, "count", len(batch), "error", err)
			return
		}
		w.log.WarnContext(ctx, "record outcomes", "channel", w.cfg.Channel, "count", len(batch), "error", err)
		<-time.After(min(100*time.Millisecond<<min(attempt, 5), 3*time.Second))
	}
	var sent, retry, failed, released int
	for _, o := range batch {
		switch o.Outcome {
		case store.OutcomeSent:
			sent++
		case store.OutcomeRetry:
			retry++
		case store.OutcomeFailed:
			failed++
		case store.OutcomeReleased:
			released++
		}
	}
	if sent > 0 {
		w.recordedSent.Store(true) // for applyKeptLoop
	}
	w.log.InfoContext(ctx, "delivery batch recorded", "channel", w.cfg.Channel, "count", len(batch),
		"sent", sent, "retry", retry, "failed", failed, "released", released)
}
