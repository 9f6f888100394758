package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crier-dev/crier/internal/event"
)

// Escalation is one due step of one home's escalation.
type Escalation struct {
	IncidentID string
	Home       string
	Step       int
	EventID    string
}

// ScheduleEscalations makes the escalation rows of an event, once: when it
// is the first update of an incident (or a drill asked to escalate) and
// after is positive, one step 1
// per home it was fanned out to, due after after. A resolution of the
// incident skips its pending steps. It is idempotent, so the fan-out can
// call it again for a redelivered event.
func (s *Store) ScheduleEscalations(ctx context.Context, ev event.Event, after time.Duration) error {
	if ev.Kind != event.KindIncident && !(ev.Kind == event.KindDrill && ev.Escalate) {
		return nil
	}
	if ev.Status == "resolved" {
		_, err := s.pool.Exec(ctx, `
			UPDATE escalations SET state = 'skipped', ran_at = now(), detail = 'the incident was resolved'
			WHERE incident_id = $1 AND state = 'pending'`, ev.IncidentID)
		if err != nil {
			return fmt.Errorf("end escalations of %s: %w", ev.IncidentID, err)
		}
		return nil
	}
	if after <= 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO escalations (incident_id, home, step, event_id, due_at)
		SELECT DISTINCT e.incident_id, coalesce(sub.organisation_key, 'subscriber:' || sub.id), 1, e.id,
		       e.received_at + $2 * interval '1 second'
		FROM events e
		JOIN deliveries d ON d.id BETWEEN e.first_delivery_id AND e.last_delivery_id AND d.event_id = e.id
		JOIN subscribers sub ON sub.id = d.subscriber_id
		WHERE e.id = $1 AND e.notify
		  AND NOT EXISTS (SELECT 1 FROM events f WHERE f.incident_id = e.incident_id
		                  AND (f.occurred_at, f.seq) < (e.occurred_at, e.seq))
		ON CONFLICT DO NOTHING`, ev.ID, after.Seconds())
	if err != nil {
		return fmt.Errorf("schedule escalations of %s: %w", ev.ID, err)
	}
	return nil
}

// escalationBatch is how many due steps one claim takes.
const escalationBatch = 50

// RunDueEscalations runs the steps due at now, each once across every
// process: a step whose home has acknowledged, or whose incident is
// resolved, is skipped; step 1 queues the first update for the home's
// escalation contacts (on each of their channels, marked with the step).
// It returns how many steps ran and how many were skipped.
func (s *Store) RunDueEscalations(ctx context.Context, now time.Time) (ran, skipped int, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT incident_id, home, step, event_id FROM escalations
			WHERE state = 'pending' AND due_at <= $1
			ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED`, now, escalationBatch)
		if err != nil {
			return err
		}
		due, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Escalation])
		if err != nil {
			return err
		}
		for _, e := range due {
			var why string
			err := tx.QueryRow(ctx, `
				SELECT CASE
					WHEN EXISTS (SELECT 1 FROM acknowledgements WHERE incident_id = $1 AND home = $2) THEN 'the home acknowledged'
					WHEN EXISTS (SELECT 1 FROM events WHERE incident_id = $1 AND status = 'resolved') THEN 'the incident was resolved'
					ELSE '' END`, e.IncidentID, e.Home).Scan(&why)
			if err != nil {
				return err
			}
			if why != "" {
				skipped++
				if _, err := tx.Exec(ctx, `UPDATE escalations SET state = 'skipped', ran_at = now(), detail = $4
					WHERE incident_id = $1 AND home = $2 AND step = $3`, e.IncidentID, e.Home, e.Step, why); err != nil {
					return err
				}
				continue
			}
			tag, err := tx.Exec(ctx, `
				INSERT INTO deliveries (event_id, incident_id, occurred_at, subscriber_id, channel, address, state, next_attempt_at, priority, escalation_step)
				SELECT ev.id, ev.incident_id, ev.occurred_at, s.id, ch.channel, ch.address, 'queued', now(), $4, $3
				FROM events ev
				CROSS JOIN subscribers s
				CROSS JOIN LATERAL `+subscriberChannels+`
				WHERE ev.id = $2 AND s.role = 'escalation'
				  AND coalesce(s.organisation_key, 'subscriber:' || s.id) = $1
				  AND ch.address IS NOT NULL AND ch.confirmed_at IS NOT NULL AND ch.opted_out_at IS NULL
				ON CONFLICT ON CONSTRAINT deliveries_once DO NOTHING`, e.Home, e.EventID, e.Step, escalationPriority)
			if err != nil {
				return err
			}
			ran++
			detail := fmt.Sprintf("%d deliveries queued for the escalation contacts", tag.RowsAffected())
			if _, err := tx.Exec(ctx, `UPDATE escalations SET state = 'done', ran_at = now(), detail = $4
				WHERE incident_id = $1 AND home = $2 AND step = $3`, e.IncidentID, e.Home, e.Step, detail); err != nil {
				return err
			}
		}
		if ran > 0 {
			if _, err := tx.Exec(ctx, `SELECT pg_notify($1, c) FROM unnest($2::text[]) AS c`, NotifyChannel, escalationChannels); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("run due escalations: %w", err)
	}
	return ran, skipped, nil
}

// escalationChannels are the channels an escalation may queue on, to wake.
var escalationChannels = []string{"email", "sms", "webhook", "teams", "slack"}

// escalationPriority is the priority of escalation deliveries: above
// every ordinary update, since the home has not answered.
const escalationPriority = 4

// SuppressEscalations stops the escalation deliveries of an incident
// still queued for a home that has acknowledged.
func (s *Store) SuppressEscalations(ctx context.Context, incidentID, home string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE deliveries d SET state = 'suppressed', next_attempt_at = NULL, updated_at = now(), last_error = 'the home acknowledged'
		FROM subscribers sub
		WHERE d.incident_id = $1 AND d.escalation_step IS NOT NULL AND d.state = 'queued'
		  AND sub.id = d.subscriber_id AND coalesce(sub.organisation_key, 'subscriber:' || sub.id) = $2`, incidentID, home)
	if err != nil {
		return fmt.Errorf("suppress escalations of %s for %s: %w", incidentID, home, err)
	}
	return nil
}
