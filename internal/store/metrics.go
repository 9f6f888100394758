package store

import (
	"context"
	"fmt"
	"time"
)

// QueueStat is the delivery queue of one channel at one moment.
type QueueStat struct {
	Channel string
	// Queued is the number of deliveries in state queued (waiting for their
	// first attempt or a retry).
	Queued int64
	// OldestAge is how long the oldest of them has been queued (since
	// fan-out or a manual retry).
	OldestAge time.Duration
}

// QueueStats returns the queue of each channel that has queued deliveries,
// for the metrics scraped by Prometheus. The partial index
// deliveries_ready (deliveries that are due at some time: queued or being
// sent) keeps it cheap however long the ledger grows.
func (s *Store) QueueStats(ctx context.Context) ([]QueueStat, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT channel, count(*), extract(epoch FROM now() - min(queued_at))::float8
		FROM deliveries
		WHERE next_attempt_at IS NOT NULL AND state = 'queued'
		GROUP BY channel
		ORDER BY channel`)
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	defer rows.Close()
	var out []QueueStat
	for rows.Next() {
		var q QueueStat
		var age float64
		if err := rows.Scan(&q.Channel, &q.Queued, &age); err != nil {
			return nil, fmt.Errorf("queue stats: %w", err)
		}
		q.OldestAge = time.Duration(max(age, 0) * float64(time.Second))
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	return out, nil
}
