package store

// SQL for the event reports of the HTTP API and the admin dashboard.

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// RecentEvents returns stored events newest first (by arrival), those that
// arrived before the event with arrival number beforeSeq when it is
// positive, at most limit of them.
func (s *Store) RecentEvents(ctx context.Context, beforeSeq int64, limit int) ([]StoredEvent, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+eventColumns+` FROM events
		WHERE $1 <= 0 OR seq < $1
		ORDER BY seq DESC LIMIT $2`, beforeSeq, max(1, limit))
	if err != nil {
		return nil, fmt.Errorf("list recent events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredEvent, error) { return scanEvent(r) })
	if err != nil {
		return nil, fmt.Errorf("list recent events: %w", err)
	}
	return out, nil
}

// CountDeliveriesByEvent counts the deliveries of each of the events per
// channel and state. Events without deliveries are absent from the map.
func (s *Store) CountDeliveriesByEvent(ctx context.Context, eventIDs []string) (map[string][]StateCount, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT d.event_id, d.channel, d.state, count(*)
		FROM events e
		JOIN deliveries d ON d.id BETWEEN e.first_delivery_id AND e.last_delivery_id AND d.event_id = e.id
		WHERE e.id = ANY($1)
		GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, eventIDs)
	if err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	out := map[string][]StateCount{}
	var id string
	var c StateCount
	_, err = pgx.ForEachRow(rows, []any{&id, &c.Channel, &c.State, &c.Count}, func() error {
		out[id] = append(out[id], c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	return out, nil
}
