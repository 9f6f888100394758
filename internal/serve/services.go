package serve

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// service is one long-running part of `crier serve`: it runs until its own
// context is cancelled by Stop, and then finishes or releases what it
// holds before it returns.
type service struct {
	name string
	run  func(soft context.Context) error

	cancel   context.CancelFunc
	done     chan struct{}
	err      error
	stopOnce sync.Once
}

func newService(name string, run func(soft context.Context) error) *service {
	return &service{name: name, run: run, done: make(chan struct{})}
}

// Start runs the service in its own goroutine, under ctx (the hard
// context: cancelling it ends the service too). A service that returns an
// error before it is stopped reports it on errc.
func (s *service) Start(ctx context.Context, errc chan<- error) {
	soft, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	go func() {
		defer close(s.done)
		s.err = s.run(soft)
		if s.err != nil && soft.Err() == nil {
			select {
			case errc <- s.err:
			default:
			}
		}
	}()
}

// Stop asks the service to stop and waits until it has, or until ctx ends.
// It reports whether the service stopped. Stop is idempotent.
func (s *service) Stop(ctx context.Context) bool {
	s.stopOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
	})
	select {
	case <-s.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// parts are the services of one process, in the order they stop.
type parts struct {
	http    *httpService
	metrics *httpService // nil without CRIER_METRICS_ADDR
	fanout  *service
	workers []*service
	listen  *service
}

// start starts every service: the delivery workers and their wake-up
// listener first, then the fan-out consumer, and HTTP last, so that nothing
// is taken in before there is something to hand it to. The returned channel
// carries the first failure of a service.
func (p *parts) start(hard context.Context) <-chan error {
	errc := make(chan error, 1)
	for _, w := range p.workers {
		w.Start(hard, errc)
	}
	p.listen.Start(hard, errc)
	p.fanout.Start(hard, errc)
	p.http.Start(hard, errc)
	if p.metrics != nil {
		p.metrics.Start(hard, errc)
	}
	return errc
}

// stop shuts the process down in order, within grace:
//
//  1. HTTP: stop accepting requests and let those in flight finish, so no
//     event is half published;
//  2. fan-out: stop pulling events, finish and acknowledge the fan-outs in
//     flight (unstarted messages are NAKed for another process);
//  3. delivery workers, all channels at once: stop claiming, release what
//     was claimed but not started, let sends in flight finish, and write
//     every outcome;
//  4. the wake-up listener;
//  5. the metrics listener, last, so the shutdown can be watched.
//
// Whatever is still running when grace is over is cut short (kill cancels
// the hard context): sends in flight end with a transient error that is
// recorded as a retry if the database still answers within a short
// moment, and leases left behind expire. Run then closes the
// senders, NATS and the database pool.
func (p *parts) stop(log *slog.Logger, grace time.Duration, kill context.CancelFunc) {
	log.Info("shutting down", "grace", grace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	clean := p.http.Stop(ctx)
	clean = p.fanout.Stop(ctx) && clean
	var wg sync.WaitGroup
	stopped := make([]bool, len(p.workers))
	for i, w := range p.workers {
		wg.Go(func() { stopped[i] = w.Stop(ctx) })
	}
	wg.Wait()
	for _, ok := range stopped {
		clean = clean && ok
	}
	clean = p.listen.Stop(ctx) && clean
	if p.metrics != nil {
		clean = p.metrics.Stop(ctx) && clean
	}
	if clean {
		log.Info("stopped cleanly")
		return
	}
	log.Warn("grace period over with work in flight: cutting it short; its leases will expire and it will be retried")
	kill()
	// Give what was cut short a moment to record its outcomes (a quarter
	// of the grace, at most a second: the database may be what is stuck).
	after, cancelAfter := context.WithTimeout(context.Background(), min(grace/4, time.Second))
	defer cancelAfter()
	p.fanout.Stop(after)
	for _, w := range p.workers {
		w.Stop(after)
	}
}
