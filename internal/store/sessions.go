package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// StartAdminSession records a new admin dashboard session lasting until
// expires and returns its id. Sessions that have expired are deleted on
// the way.
func (s *Store) StartAdminSession(ctx context.Context, now, expires time.Time) (int64, error) {
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM admin_sessions WHERE expires_at <= $1`, now)
	var id int64
	b.Queue(`INSERT INTO admin_sessions (created_at, expires_at) VALUES ($1, $2) RETURNING id`, now, expires).
		QueryRow(func(r pgx.Row) error { return r.Scan(&id) })
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("start admin session: %w", err)
	}
	return id, nil
}

// AdminSessionLive reports whether session id exists and has not expired
// at now.
func (s *Store) AdminSessionLive(ctx context.Context, id int64, now time.Time) (bool, error) {
	var live bool
	err := s.pool.QueryRow(ctx, `SELECT true FROM admin_sessions WHERE id = $1 AND expires_at > $2`, id, now).Scan(&live)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up admin session: %w", err)
	}
	return live, nil
}

// EndAdminSession ends session id; ending one that does not exist is not
// an error.
func (s *Store) EndAdminSession(ctx context.Context, id int64) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM admin_sessions WHERE id = $1`, id); err != nil {
		return fmt.Errorf("end admin session: %w", err)
	}
	return nil
}

// EndAllAdminSessions ends every admin session and returns how many were
// live.
func (s *Store) EndAllAdminSessions(ctx context.Context, now time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `WITH d AS (DELETE FROM admin_sessions RETURNING expires_at) SELECT 1 FROM d WHERE expires_at > $1`, now)
	if err != nil {
		return 0, fmt.Errorf("end all admin sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

// inboundReplayWindow is how long an inbound message id is remembered.
// Twilio's signature carries no time, so a captured request stays valid;
// a year bounds the table (inbound texts are few) while outlasting any
// use a capture could have.
const inboundReplayWindow = 365 * 24 * time.Hour

// FirstInbound records an inbound message's provider id and reports
// whether it is the first time crier sees it. A repeated id (Twilio's
// retry, or a replayed capture) must change nothing.
func (s *Store) FirstInbound(ctx context.Context, id string) (bool, error) {
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM inbound_messages WHERE received_at < now() - $1 * interval '1 second'`, inboundReplayWindow.Seconds())
	var first bool
	b.Queue(`INSERT INTO inbound_messages (message_sid) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true`, id).
		QueryRow(func(r pgx.Row) error {
			err := r.Scan(&first)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			return err
		})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return false, fmt.Errorf("record inbound message: %w", err)
	}
	return first, nil
}
