package deliver

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crier-dev/crier/internal/store"
)

// Listen holds one connection LISTENing on store.NotifyChannel and calls
// wake with the channel named in each notification, until ctx is cancelled.
// A lost connection is re-established; workers poll meanwhile.
func Listen(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, wake func(channel string)) {
	const firstDelay = 100 * time.Millisecond
	delay := firstDelay
	for ctx.Err() == nil {
		listened, err := listenOnce(ctx, pool, wake)
		if ctx.Err() != nil {
			return
		}
		if listened {
			// The connection worked before it broke: start backing off
			// afresh.
			delay = firstDelay
		}
		log.WarnContext(ctx, "listen for queued deliveries", "error", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// listenOnce listens on one connection until it fails. listened reports
// whether LISTEN had succeeded on it.
func listenOnce(ctx context.Context, pool *pgxpool.Pool, wake func(string)) (listened bool, err error) {
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("acquire connection: %w", err)
	}
	// The connection carries LISTEN state: take it out of the pool for good.
	conn := pc.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+store.NotifyChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		wake(n.Payload)
	}
}
