package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Delivery states.
const (
	StateQueued      = "queued"
	StateSending     = "sending"
	StateSent        = "sent"
	StateDelivered   = "delivered"
	StateUndelivered = "undelivered"
	StateFailed      = "failed"
	StateSuperseded  = "superseded"
	StateSuppressed  = "suppressed"
)

// Claimed is a delivery leased to one worker for sending.
type Claimed struct {
	ID           int64
	EventID      string
	SubscriberID int64
	Channel      string
	Address      string
	Attempt      int // this attempt's number, from 1
	// QueuedAt is when the delivery was queued (fan-out or manual retry);
	// its maximum age counts from here.
	QueuedAt  time.Time
	ClaimedAt time.Time
	// Reclaimed reports that the delivery was leased before and that lease
	// expired: the worker that held it stopped while sending, and may have
	// sent it.
	Reclaimed bool
	// Priority is the delivery's priority (event.Priority), highest first.
	Priority int
}

// Claim leases up to limit deliveries of channel that are due, highest
// priority first and oldest first within a priority, skipping rows other workers hold: queued ones, and those whose
// lease expired (their worker died; the failed attempt counts). The lease
// is owned by owner and expires after lease.
//
// The claim changes no indexed column (see migration 00007), so each row
// is updated in place on its page, without new index entries.
func (s *Store) Claim(ctx context.Context, channel string, limit int, owner string, lease time.Duration) ([]Claimed, error) {
	// deliveries_ready also holds the rows being sent, which the claim
	// skips by their state. Only a scan in the index's order stops after
	// limit rows; the plan a prepared statement keeps, costed on
	// statistics from when the table was small, can instead read every due
	// row of the channel into a bitmap and sort them, on every claim.
	// The transaction's settings rule those plans out.
	var out []Claimed
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	for _, set := range claimPlan {
		b.Queue(set)
	}
	queueClaim(b, claimSQL, &out, channel, limit, owner, lease.Milliseconds(), LeaseExpiredError)
	b.Queue(`COMMIT`)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("claim %s deliveries: %w", channel, err)
	}
	return out, nil
}

// queueClaim queues a claim statement on b that collects its rows into out.
func queueClaim(b *pgx.Batch, sql string, out *[]Claimed, args ...any) {
	b.Queue(sql, args...).Query(func(rows pgx.Rows) error {
		var err error
		*out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Claimed, error) {
			var c Claimed
			err := r.Scan(&c.ID, &c.EventID, &c.SubscriberID, &c.Channel, &c.Address, &c.Attempt, &c.QueuedAt, &c.ClaimedAt, &c.Reclaimed, &c.Priority)
			return c, err
		})
		return err
	})
}

// claimPlan are the settings of the claim's transaction (see Claim and
// TestClaimScansTheQueueInOrder).
var claimPlan = []string{`SET LOCAL enable_bitmapscan = off`, `SET LOCAL enable_seqscan = off`}

// claimSQL leases up to $2 due deliveries of channel $1 to owner $3 for $4
// milliseconds (see Claim).
//
// The update finds the picked rows by their ids (id = ANY of the picked
// ids), never by joining the picked rows to deliveries: a join leaves the
// plan to the statistics, and the plan a pooled connection keeps from a
// quiet start (the table analyzed empty) joined them to a full scan of
// deliveries on every claim, 5 s per claim with 100,000 queued
// (TestClaimPlanSurvivesAnEmptyAnalyze). A primary-key lookup of a list of
// ids has one plan whatever the statistics say; the last join only pairs
// the claimed rows with what picked knew of them.
var claimSQL = fmt.Sprintf(claimSQLFormat, "")

// claimSQLFormat is claimSQL with a place for one more CTE, which the
// paced claim uses to take its tokens (claimPacedSQL).
const claimSQLFormat = `
	WITH picked AS MATERIALIZED (
		SELECT id, state = 'sending' AS expired FROM deliveries
		WHERE channel = $1 AND next_attempt_at <= now()
		  AND (state = 'queued' OR (state = 'sending' AND lease_expires_at < now()))
		ORDER BY priority DESC, next_attempt_at, id
		LIMIT $2
		FOR UPDATE SKIP LOCKED
	)%s, claimed AS (
		UPDATE deliveries d
		SET state = 'sending', attempts = d.attempts + 1, lease_owner = $3,
		    lease_expires_at = now() + $4 * interval '1 millisecond', updated_at = now(),
		    last_error = CASE WHEN d.state = 'sending' THEN $5 ELSE d.last_error END
		WHERE d.id = ANY (ARRAY(SELECT id FROM picked))
		RETURNING d.id, d.event_id, d.subscriber_id, d.channel, d.address, d.attempts, d.queued_at, d.next_attempt_at, d.priority
	)
	SELECT c.id, c.event_id, c.subscriber_id, c.channel, c.address, c.attempts, c.queued_at, now(), p.expired, c.priority
	FROM claimed c JOIN picked p USING (id)
	ORDER BY c.priority DESC, c.next_attempt_at, c.id`

// LeaseExpiredError is the last error of a delivery claimed again after its
// lease expired.
const LeaseExpiredError = "lease expired: worker stopped while sending"

// Attempt outcomes, as recorded in delivery_attempts.outcome.
const (
	OutcomeSent     = "sent"     // provider accepted: state sent
	OutcomeRetry    = "retry"    // transient failure: state queued again
	OutcomeFailed   = "failed"   // permanent failure, attempts or age exhausted
	OutcomeReleased = "released" // not attempted (shutdown): back to queued, attempt not counted
)

// Outcome is the result of one claimed delivery.
type Outcome struct {
	ID         int64
	Attempt    int
	Outcome    string // one of the Outcome constants
	ProviderID string
	ErrorCode  string
	Error      string
	// NextAttemptAt is when a retried delivery is due again.
	NextAttemptAt time.Time
	// StartedAt is when the attempt began; with ID and Attempt it
	// identifies the attempt row. Zero means the time of the Record call,
	// so outcomes written again would then be recorded twice.
	StartedAt time.Time
}

// Record writes a batch of outcomes and their attempt rows in one round
// trip. A delivery that goes back to the queue (retry, released) becomes
// superseded instead when a newer update of its incident has been fanned
// out to the same subscriber and channel meanwhile. Only rows still leased
// by owner for the outcome's attempt change state: a lease that expired and
// was claimed again, by another worker or by this one, is left to that
// newer attempt (this attempt is still recorded). It returns how many
// deliveries changed.
//
// Writing the same outcomes again, as a caller retrying after an error
// does, records no attempt twice (see the insert below).
func (s *Store) Record(ctx context.Context, owner string, outcomes []Outcome) (int64, error) {
	n := len(outcomes)
	ids := make([]int64, n)
	attempts := make([]int32, n)
	kinds := make([]string, n)
	providerIDs := make([]string, n)
	codes := make([]string, n)
	errs := make([]string, n)
	next := make([]time.Time, n)
	started := make([]time.Time, n)
	for i, o := range outcomes {
		ids[i], attempts[i], kinds[i] = o.ID, int32(o.Attempt), o.Outcome
		providerIDs[i], codes[i], errs[i] = o.ProviderID, o.ErrorCode, truncate(o.Error, 2000)
		next[i], started[i] = o.NextAttemptAt, o.StartedAt
		if next[i].IsZero() {
			next[i] = time.Now()
		}
		if started[i].IsZero() {
			started[i] = time.Now()
		}
	}
	var changed int64
	args := []any{ids, attempts, kinds, providerIDs, codes, errs, next, started, owner}
	err := s.pool.QueryRow(ctx, recordSQL, args...).Scan(&changed)
	if isUniqueViolation(err) {
		// An attempt of the batch is recorded already: this is the batch
		// written again after an error that came after its commit. The
		// statement rolled back as a whole; write it skipping those.
		err = s.pool.QueryRow(ctx, recordAgainSQL, args...).Scan(&changed)
	}
	if err != nil {
		return 0, fmt.Errorf("record %d outcomes: %w", n, err)
	}
	return changed, nil
}

// recordSQL writes the outcomes $1-$8 of owner $9 (see Record), and
// recordAgainSQL writes them again, skipping the attempts recorded already.
// A plain INSERT of the attempt rows costs PostgreSQL less than one with ON
// CONFLICT, which inserts each row speculatively (see fanOutInsert).
var (
	recordSQL      = fmt.Sprintf(recordSQLFormat, "")
	recordAgainSQL = fmt.Sprintf(recordSQLFormat, "ON CONFLICT (delivery_id, attempt, started_at) DO NOTHING")
)

// recordSQLFormat is recordSQL with a %s for the attempts' conflict clause.
const recordSQLFormat = `
		WITH o AS (
			SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],
			                     $7::timestamptz[], $8::timestamptz[])
			AS o(id, attempt, outcome, provider_id, error_code, error, next_attempt_at, started_at)
		), upd AS (
			UPDATE deliveries d SET
				state = CASE
					WHEN o.outcome = 'sent' THEN 'sent'
					WHEN o.outcome = 'failed' THEN 'failed'
					WHEN ` + staleSQL + ` THEN 'superseded'
					ELSE 'queued' END,
				-- Due again only if queued again (deliveries_due_while_pending).
				next_attempt_at = CASE
					WHEN o.outcome IN ('sent', 'failed') THEN NULL
					WHEN ` + staleSQL + ` THEN NULL
					ELSE o.next_attempt_at END,
				attempts = CASE WHEN o.outcome = 'released' THEN d.attempts - 1 ELSE d.attempts END,
				provider_id = coalesce(nullif(o.provider_id, ''), d.provider_id),
				error_code = CASE WHEN o.outcome = 'released' THEN d.error_code ELSE nullif(o.error_code, '') END,
				last_error = CASE WHEN o.outcome = 'released' THEN d.last_error ELSE nullif(o.error, '') END,
				sent_at = CASE WHEN o.outcome = 'sent' THEN now() ELSE d.sent_at END,
				lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
			FROM o
			WHERE d.id = o.id AND d.state = 'sending' AND d.lease_owner = $9 AND d.attempts = o.attempt
			RETURNING d.id
		), att AS (
			INSERT INTO delivery_attempts (delivery_id, attempt, started_at, outcome, provider_id, error_code, error)
			SELECT o.id, o.attempt, o.started_at, o.outcome, nullif(o.provider_id, ''), nullif(o.error_code, ''), nullif(o.error, '')
			FROM o WHERE o.outcome <> 'released'
			-- An error can come after the commit (the connection broke
			-- before the answer), and the caller then writes the batch
			-- again: its first write fails on the attempts' key, and the
			-- second (recordAgainSQL) skips the attempts recorded, so they
			-- are not doubled. Distinct attempts never share the key: the
			-- number rises with every claim, and when one comes back
			-- (RetryFailed resets the count, a release hands it back) the
			-- new attempt starts later.
			%s
		)
		SELECT count(*) FROM upd`

// staleSQL says, in Record, that the delivery d going back to the queue is
// stale: a newer update of its incident reached the same person meanwhile.
// It is only evaluated for outcomes that go back to the queue.
const staleSQL = `EXISTS (
						SELECT 1 FROM deliveries n
						WHERE n.subscriber_id = d.subscriber_id AND n.channel = d.channel
						  AND n.incident_id = d.incident_id AND n.id <> d.id
						  AND (n.occurred_at > d.occurred_at OR (n.occurred_at = d.occurred_at AND n.id > d.id)))`

func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	// Cut on a rune boundary.
	for max > 0 && s[max]&0xC0 == 0x80 {
		max--
	}
	return s[:max]
}

// Scope selects the deliveries of one event or of one incident.
type Scope struct {
	EventID    string
	IncidentID string
}

// where is the condition on deliveries for sc, with its argument as $1.
// It bounds the primary key by the events' delivery ids (see migration
// 00006): there is no index on event_id.
func (sc Scope) where() (string, []any) {
	if sc.EventID != "" {
		return `id BETWEEN (SELECT first_delivery_id FROM events WHERE id = $1)
		           AND (SELECT last_delivery_id FROM events WHERE id = $1)
		        AND event_id = $1`, []any{sc.EventID}
	}
	// The span of the whole incident: other incidents' deliveries in it
	// are read and left out.
	return `id BETWEEN (SELECT min(first_delivery_id) FROM events WHERE incident_id = $1)
	           AND (SELECT max(last_delivery_id) FROM events WHERE incident_id = $1)
	        AND event_id IN (SELECT id FROM events WHERE incident_id = $1)`, []any{sc.IncidentID}
}

// StateCount is how many deliveries of a channel are in a state.
type StateCount struct {
	Channel string `json:"channel"`
	State   string `json:"state"`
	Count   int64  `json:"count"`
}

// CountDeliveries counts the deliveries in scope per channel and state.
func (s *Store) CountDeliveries(ctx context.Context, sc Scope) ([]StateCount, error) {
	where, args := sc.where()
	rows, err := s.pool.Query(ctx, `SELECT channel, state, count(*) FROM deliveries WHERE `+where+` GROUP BY 1, 2 ORDER BY 1, 2`, args...)
	if err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[StateCount])
	if err != nil {
		return nil, fmt.Errorf("count deliveries: %w", err)
	}
	return out, nil
}

// Delivery is one row of the ledger, for reports.
type Delivery struct {
	ID           int64      `json:"id"`
	EventID      string     `json:"event_id"`
	SubscriberID int64      `json:"subscriber_id"`
	Channel      string     `json:"channel"`
	Address      string     `json:"address"`
	State        string     `json:"state"`
	Attempts     int        `json:"attempts"`
	ErrorCode    string     `json:"error_code,omitempty"`
	LastError    string     `json:"last_error,omitempty"`
	ProviderID   string     `json:"provider_id,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	SentAt       *time.Time `json:"sent_at,omitempty"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

// DeliveryFilter narrows ListDeliveries.
type DeliveryFilter struct {
	Scope
	Channel string // optional
	State   string // optional
	AfterID int64  // for pagination: rows with a greater id
	Limit   int
}

// ListDeliveries lists deliveries in scope ordered by id.
func (s *Store) ListDeliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, error) {
	where, args := f.where()
	args = append(args, f.Channel, f.State, f.AfterID, max(1, f.Limit))
	rows, err := s.pool.Query(ctx, `
		SELECT id, event_id, subscriber_id, channel, address, state, attempts,
		       coalesce(error_code, ''), coalesce(last_error, ''), coalesce(provider_id, ''),
		       created_at, sent_at, updated_at
		FROM deliveries
		WHERE `+where+` AND ($2 = '' OR channel = $2) AND ($3 = '' OR state = $3) AND id > $4
		ORDER BY id LIMIT $5`, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Delivery])
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

// RetryFailed puts the failed deliveries in scope back in the queue with a
// fresh attempt count and age, and returns how many. Deliveries to a
// channel the subscriber has since opted out of stay failed.
func (s *Store) RetryFailed(ctx context.Context, sc Scope) (int64, error) {
	where, args := sc.where()
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = now(), queued_at = now(),
			       error_code = NULL, last_error = NULL, updated_at = now()
			WHERE `+where+` AND state = 'failed'
			  AND NOT EXISTS (
			      SELECT 1 FROM subscribers s WHERE s.id = subscriber_id
			      AND ((channel = 'email' AND s.email_opted_out_at IS NOT NULL)
			        OR (channel = 'sms' AND s.sms_opted_out_at IS NOT NULL)))`, args...)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		if n > 0 {
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, 'email'), pg_notify($1, 'sms')`, NotifyChannel)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retry failed deliveries: %w", err)
	}
	return n, nil
}

// ProviderStatus applies an SMS provider's delivery report to the text it
// identifies by provider message id. Only a text still in sending or sent
// moves (to delivered, undelivered or failed): reports that arrive twice or
// out of order never move a delivery back. It reports whether a delivery
// matched the provider id at all, and whether the report moved it.
func (s *Store) ProviderStatus(ctx context.Context, providerID, state, code, message string) (matched, moved bool, err error) {
	err = s.pool.QueryRow(ctx, `
		WITH upd AS (
			UPDATE deliveries SET state = $2, error_code = coalesce(nullif($3, ''), error_code),
			       last_error = coalesce(nullif($4, ''), last_error), next_attempt_at = NULL, updated_at = now()
			WHERE channel = 'sms' AND provider_id = $1 AND state IN ('sending', 'sent')
			RETURNING id
		)
		SELECT EXISTS (SELECT 1 FROM deliveries WHERE channel = 'sms' AND provider_id = $1), EXISTS (SELECT 1 FROM upd)`,
		providerID, state, code, message).Scan(&matched, &moved)
	if err != nil {
		return false, false, fmt.Errorf("apply provider status: %w", err)
	}
	return matched, moved, nil
}

// KeepProviderStatus keeps a delivery report whose provider id matches no
// delivery yet (ProviderStatus said so), to be applied when the send is
// recorded; a later report for the same id replaces it. Reports kept for
// longer than keptReportAge, whose send never came, are deleted.
func (s *Store) KeepProviderStatus(ctx context.Context, providerID, state, code, message string) error {
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM provider_reports WHERE received_at < now() - $1 * interval '1 second'`, keptReportAge.Seconds())
	b.Queue(`
		INSERT INTO provider_reports (provider_id, state, error_code, message) VALUES ($1, $2, nullif($3, ''), nullif($4, ''))
		ON CONFLICT (provider_id) DO UPDATE
		SET state = excluded.state, error_code = excluded.error_code, message = excluded.message, received_at = now()`,
		providerID, state, code, message)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("keep provider status: %w", err)
	}
	return nil
}

// keptReportAge is how long a report waits for its send to be recorded:
// longer than any lease, so a send that a dead process left behind is
// recorded by another well within it.
const keptReportAge = 24 * time.Hour

// ApplyKeptStatuses applies the kept reports whose sends have been recorded
// since, as ProviderStatus would have, and deletes them. It returns how many
// it applied. The delivery workers call it after recording sends; when no
// report is kept it is one look-up of an empty table.
func (s *Store) ApplyKeptStatuses(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		WITH r AS (
			DELETE FROM provider_reports r USING deliveries d
			WHERE d.channel = 'sms' AND d.provider_id = r.provider_id
			RETURNING r.provider_id, r.state, r.error_code, r.message
		)
		UPDATE deliveries d SET state = r.state, error_code = coalesce(r.error_code, d.error_code),
		       last_error = coalesce(r.message, d.last_error), next_attempt_at = NULL, updated_at = now()
		FROM r
		WHERE d.channel = 'sms' AND d.provider_id = r.provider_id AND d.state IN ('sending', 'sent')`)
	if err != nil {
		return 0, fmt.Errorf("apply kept provider statuses: %w", err)
	}
	return tag.RowsAffected(), nil
}
