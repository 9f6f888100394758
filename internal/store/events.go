package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crier-dev/crier/internal/event"
)

// IngestResult says what storing and fanning out one event did.
type IngestResult struct {
	// Duplicate is true when the event id was already stored and fanned
	// out: nothing new was written.
	Duplicate bool
	// Queued and Superseded count the deliveries created per channel, by
	// the state they started in.
	Queued     map[string]int64
	Superseded map[string]int64
	// Replaced counts older queued deliveries of the same incident that this
	// event superseded.
	Replaced int64
	// Chunks is the number of fan-out transactions.
	Chunks int
}

// DefaultChunkSize is how many subscriber ids the first fan-out
// transaction of an event covers; each later one covers twice as many as
// the one before, up to maxChunkGrowth times this. Each chunk commits on
// its own, so workers start sending while the rest of a large event is
// still being fanned out.
const DefaultChunkSize = 5_000

const maxChunkGrowth = 16

// fanOutLock is the advisory lock every fan-out chunk holds shared and
// DeleteSubscriber holds exclusively.
const fanOutLock = 0x63726965 // "crie"

// Ingest stores a validated event and fans it out into the delivery ledger.
// The event row is committed first; its deliveries are then created in
// chunks of subscriber ids, each chunk one transaction, two at a time;
// finally the event is marked fanned out. When Ingest returns nil every
// delivery the event implies is committed. When it fails part-way, calling
// it again with the same event (a redelivery) resumes: chunks already
// committed create nothing new, because a delivery is unique per
// (subscriber, event, channel). The fan-outs of one incident's events are
// serialised with an advisory lock so superseding is exact.
func (s *Store) Ingest(ctx context.Context, ev event.Event, raw []byte, streamSeq uint64) (IngestResult, error) {
	return s.IngestChunked(ctx, ev, raw, streamSeq, DefaultChunkSize)
}

// IngestChunked is Ingest with a chosen chunk size.
func (s *Store) IngestChunked(ctx context.Context, ev event.Event, raw []byte, streamSeq uint64, chunk int64) (IngestResult, error) {
	res := IngestResult{Queued: map[string]int64{}, Superseded: map[string]int64{}}
	var streamSeqArg *int64
	if streamSeq > 0 {
		v := int64(streamSeq)
		streamSeqArg = &v
	}
	var done bool
	fresh := false // the event row is new: no delivery of it exists yet
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var seq int64
		err := tx.QueryRow(ctx, `
			INSERT INTO events (id, incident_id, kind, status, impact, title, body, components,
			                    occurred_at, scheduled_for, scheduled_until, notify, raw, stream_seq, fanned_out_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, CASE WHEN NOT $12 THEN now() END)
			ON CONFLICT (id) DO NOTHING
			RETURNING seq`,
			ev.ID, ev.IncidentID, ev.Kind, ev.Status, ev.Impact, ev.Title, ev.Body, ev.Components,
			ev.OccurredAt, ev.ScheduledFor, ev.ScheduledUntil, ev.Notify, raw, streamSeqArg).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			// Stored before: finished, or a fan-out that stopped part-way.
			return tx.QueryRow(ctx, `SELECT fanned_out_at IS NOT NULL FROM events WHERE id = $1`, ev.ID).Scan(&done)
		}
		if err != nil {
			return fmt.Errorf("insert event: %w", err)
		}
		done, fresh = !ev.Notify, true
		return nil
	})
	if err != nil {
		return IngestResult{}, fmt.Errorf("ingest event %q: %w", ev.ID, err)
	}
	if done {
		res.Duplicate = true
		return res, nil
	}
	var lo, hi int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(min(id), 0), coalesce(max(id), -1) FROM subscribers`).Scan(&lo, &hi); err != nil {
		return IngestResult{}, fmt.Errorf("ingest event %q: subscriber range: %w", ev.ID, err)
	}
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	unlock, err := s.lockIncident(ctx, ev.IncidentID)
	if err != nil {
		return IngestResult{}, fmt.Errorf("ingest event %q: %w", ev.ID, err)
	}
	defer unlock()
	prio, err := s.priority(ctx, ev)
	if err != nil {
		return IngestResult{}, fmt.Errorf("ingest event %q: %w", ev.ID, err)
	}
	if err := s.fanOutChunks(ctx, ev, prio, chunkRanges(lo, hi, chunk), fresh, &res); err != nil {
		return IngestResult{}, fmt.Errorf("ingest event %q: %w", ev.ID, err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE events SET fanned_out_at = now() WHERE id = $1`, ev.ID); err != nil {
		return IngestResult{}, fmt.Errorf("ingest event %q: mark fanned out: %w", ev.ID, err)
	}
	return res, nil
}

// priority is the priority of ev's deliveries (event.Priority): for a
// resolution, the highest of its incident's updates stored so far.
func (s *Store) priority(ctx context.Context, ev event.Event) (int, error) {
	p := event.Priority(ev)
	if !event.RanksWithIncident(ev) {
		return p, nil
	}
	var impacts []string
	err := s.pool.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT impact), '{}') FROM events WHERE incident_id = $1 AND kind = $2`,
		ev.IncidentID, event.KindIncident).Scan(&impacts)
	if err != nil {
		return 0, fmt.Errorf("incident's highest impact: %w", err)
	}
	for _, imp := range impacts {
		p = max(p, event.ImpactPriority(imp))
	}
	return p, nil
}

// idRange is a fan-out chunk: the subscriber ids [from, to).
type idRange struct{ from, to int64 }

// chunkRanges splits the subscriber ids [lo, hi] into chunks. The first is
// small so the first messages leave at once; later ones double, up to
// maxChunkGrowth times the first, so a large event costs few transactions.
func chunkRanges(lo, hi, chunk int64) []idRange {
	var out []idRange
	size := chunk
	for from := lo; from <= hi; from += size {
		if len(out) > 0 {
			size = min(size*2, chunk*maxChunkGrowth)
		}
		out = append(out, idRange{from, from + size})
	}
	return out
}

// fanOutParallel is how many chunks of one event are fanned out at once. A
// chunk's INSERT runs on one PostgreSQL core; two keep both cores of a
// small server busy (BenchmarkFanOutMillion: 15.4 s one at a time, see
// docs/performance.md for two), while more would mostly contend for the same index pages
// and the connection pool.
const fanOutParallel = 2

// ConnsPerFanOut is how many pooled connections one event's fan-out holds
// at most: the incident's lock and one per chunk in flight.
const ConnsPerFanOut = 1 + fanOutParallel

// fanOutChunks fans the chunks out, up to fanOutParallel at once in
// order, and adds each committed chunk to res. fresh says that no delivery
// of ev existed when it was stored: chunks then use a plain INSERT until
// one meets deliveries that another process made meanwhile. It stops at
// the first error; the chunks committed by then stay (a later Ingest
// resumes).
func (s *Store) fanOutChunks(ctx context.Context, ev event.Event, prio int, chunks []idRange, fresh bool, res *IngestResult) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var resume atomic.Bool
	resume.Store(!fresh)
	var mu sync.Mutex // guards res
	next := make(chan idRange)
	var wg sync.WaitGroup
	for range min(fanOutParallel, len(chunks)) {
		wg.Go(func() {
			for r := range next {
				chunk, err := s.fanOutChunk(ctx, ev, prio, r, &resume)
				if err != nil {
					cancel(err)
					continue // drain: the feeder stops at the cancellation
				}
				mu.Lock()
				res.add(chunk)
				mu.Unlock()
			}
		})
	}
feed:
	for _, r := range chunks {
		select {
		case next <- r:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx) // nil unless a chunk failed or ctx ended
}

// fanOutChunk fans ev out to the subscriber ids r in one transaction,
// without ON CONFLICT unless resume is set. When a plain INSERT meets
// deliveries that exist (another process fanned out part of this event
// meanwhile: JetStream redelivered it while this one was slow), it sets
// resume, for this chunk and every later one.
func (s *Store) fanOutChunk(ctx context.Context, ev event.Event, prio int, r idRange, resume *atomic.Bool) (IngestResult, error) {
	for {
		skipExisting := resume.Load()
		chunk := IngestResult{Queued: map[string]int64{}, Superseded: map[string]int64{}, Chunks: 1}
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			return fanOut(ctx, tx, ev, prio, r.from, r.to, skipExisting, &chunk)
		})
		if err != nil && !skipExisting && isUniqueViolation(err) {
			resume.Store(true)
			continue
		}
		return chunk, err
	}
}

// add adds a chunk's counts to r.
func (r *IngestResult) add(chunk IngestResult) {
	for ch, n := range chunk.Queued {
		r.Queued[ch] += n
	}
	for ch, n := range chunk.Superseded {
		r.Superseded[ch] += n
	}
	r.Replaced += chunk.Replaced
	r.Chunks += chunk.Chunks
}

// lockIncident takes the incident's fan-out lock, which keeps the chunks
// of two events of one incident from interleaving, so that superseding is
// exact, while the chunks of one event run in parallel. It is a session
// lock on a pooled connection of its own, held until unlock; unlock
// returns the connection to the pool only once the lock is released, and
// otherwise closes it (which releases the lock too).
func (s *Store) lockIncident(ctx context.Context, incidentID string) (unlock func(), err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock incident: %w", err)
	}
	// done gives conn back to the pool once the lock is known to be
	// released, and otherwise closes it, which releases the lock too.
	done := func(unlock bool) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var released bool
		if unlock {
			err := conn.QueryRow(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 7))`, incidentID).Scan(&released)
			released = err == nil && released
		}
		if released {
			conn.Release()
			return
		}
		_ = conn.Hijack().Close(ctx)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 7))`, incidentID); err != nil {
		done(false) // whether the lock was taken is unknown
		return nil, fmt.Errorf("lock incident: %w", err)
	}
	return func() { done(true) }, nil
}

// subscriberChannels is, for subscriber s, one row per channel: its
// address there, when it was confirmed (a destination URL counts as
// confirmed when the subscriber was made) and when it was opted out. The
// fan-out and the escalations choose among these rows.
const subscriberChannels = `(VALUES
		('email',   s.email,       s.email_confirmed_at, s.email_opted_out_at),
		('sms',     s.phone,       s.sms_confirmed_at,   s.sms_opted_out_at),
		('webhook', s.webhook_url, s.created_at,         s.webhook_opted_out_at),
		('teams',   s.teams_url,   s.created_at,         s.teams_opted_out_at),
		('slack',   s.slack_url,   s.created_at,         s.slack_opted_out_at)
	) AS ch (channel, address, confirmed_at, opted_out_at)`

// fanOutSQL expands the event's components through the tree (the key itself,
// its ancestors and its descendants), finds every subscriber of any of those
// keys, and inserts one delivery of priority $8 per confirmed, not
// opted-out channel (a destination URL, set by an administrator, counts as
// confirmed). $5
// decides the initial state: when a newer update of the incident has already
// been fanned out, a row whose (subscriber, channel) received that newer
// update starts superseded.
const fanOutSQL = `
WITH keys AS (
	SELECT c.key FROM components c
	WHERE EXISTS (
		SELECT 1 FROM unnest($4::text[]) AS e(k)
		WHERE c.key = e.k OR starts_with(e.k, c.key || '/') OR starts_with(c.key, e.k || '/'))
), ins AS (
	INSERT INTO deliveries (event_id, incident_id, occurred_at, subscriber_id, channel, address, state, next_attempt_at, priority)
	SELECT $1, $2, $3, s.id, ch.channel, ch.address,
	       CASE WHEN st.stale THEN 'superseded' ELSE 'queued' END,
	       CASE WHEN st.stale THEN NULL ELSE now() END, $8
	FROM subscribers s
	CROSS JOIN LATERAL ` + subscriberChannels + `
	CROSS JOIN LATERAL (SELECT $5 AND EXISTS (
	    SELECT 1 FROM deliveries d
	    WHERE d.subscriber_id = s.id AND d.channel = ch.channel AND d.incident_id = $2
	      AND d.occurred_at > $3)) AS st (stale)
	WHERE s.id >= $6 AND s.id < $7 AND s.role = 'primary' -- escalation contacts hear from escalations only
	  AND s.id IN (SELECT subscriber_id FROM subscriptions
	               WHERE component_key IN (SELECT key FROM keys) AND subscriber_id >= $6 AND subscriber_id < $7)
	  AND ch.address IS NOT NULL AND ch.confirmed_at IS NOT NULL AND ch.opted_out_at IS NULL
	%s
	RETURNING id, channel, state
)
SELECT channel, state, count(*), min(id), max(id) FROM ins GROUP BY channel, state`

// fanOutInsert is fanOutSQL for an event with no deliveries yet, and
// fanOutResume for one whose fan-out stopped part-way: it skips the
// deliveries that exist. A plain INSERT is about 40% faster than one with
// ON CONFLICT, which inserts each row speculatively (BenchmarkFanOut: 57–66k
// rows/s with it, 88–96k without); the unique key still guards both.
var (
	fanOutInsert = fmt.Sprintf(fanOutSQL, "")
	fanOutResume = fmt.Sprintf(fanOutSQL, "ON CONFLICT ON CONSTRAINT deliveries_once DO NOTHING")
)

// supersedeSQL marks older still-queued deliveries of the incident as
// superseded for every (subscriber, channel) that the new event queued in
// the chunk of subscriber ids [$3, $4), whose deliveries have ids in
// [$5, $6].
// Equal occurred_at counts as older: the later arrival wins ties.
const supersedeSQL = `
UPDATE deliveries d SET state = 'superseded', next_attempt_at = NULL, updated_at = now(), last_error = 'superseded by ' || $1
FROM deliveries n
WHERE n.id BETWEEN $5 AND $6 AND n.event_id = $1 AND n.state = 'queued'
  AND n.subscriber_id >= $3 AND n.subscriber_id < $4
  AND d.incident_id = $2 AND d.state = 'queued' AND d.event_id <> $1
  AND d.subscriber_id = n.subscriber_id AND d.channel = n.channel
  AND d.occurred_at <= n.occurred_at`

func fanOut(ctx context.Context, tx pgx.Tx, ev event.Event, prio int, from, to int64, resume bool, res *IngestResult) error {
	// The incident's lock is held by Ingest (lockIncident).
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, fanOutLock)
	if err != nil {
		return fmt.Errorf("lock fan-out: %w", err)
	}
	var newer bool
	err = tx.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM events
		               WHERE incident_id = $1 AND id <> $2 AND notify AND occurred_at > $3)`,
		ev.IncidentID, ev.ID, ev.OccurredAt).Scan(&newer)
	if err != nil {
		return fmt.Errorf("check newer updates: %w", err)
	}
	insert := fanOutInsert
	if resume {
		insert = fanOutResume
	}
	rows, err := tx.Query(ctx, insert, ev.ID, ev.IncidentID, ev.OccurredAt, ev.Components, newer, from, to, prio)
	if err != nil {
		return fmt.Errorf("fan out: %w", err)
	}
	var channel, state string
	var n, minID, maxID int64
	first, last := int64(-1), int64(-1) // of the chunk's deliveries
	_, err = pgx.ForEachRow(rows, []any{&channel, &state, &n, &minID, &maxID}, func() error {
		if state == "queued" {
			res.Queued[channel] += n
		} else {
			res.Superseded[channel] += n
		}
		if first < 0 || minID < first {
			first = minID
		}
		last = max(last, maxID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fan out: %w", err)
	}
	if last < 0 {
		return nil // nobody in this chunk: nothing to supersede or send
	}
	// The reports find the event's deliveries in this range of ids.
	if _, err := tx.Exec(ctx, `
		UPDATE events SET first_delivery_id = least(first_delivery_id, $2),
		                  last_delivery_id = greatest(last_delivery_id, $3)
		WHERE id = $1`, ev.ID, first, last); err != nil {
		return fmt.Errorf("record delivery ids: %w", err)
	}
	// Only an incident with an earlier (or simultaneous) update can have
	// deliveries to supersede; the first update of an incident skips it.
	var older bool
	err = tx.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM events
		               WHERE incident_id = $1 AND id <> $2 AND notify AND occurred_at <= $3)`,
		ev.IncidentID, ev.ID, ev.OccurredAt).Scan(&older)
	if err != nil {
		return fmt.Errorf("check older updates: %w", err)
	}
	if older {
		tag, err := tx.Exec(ctx, supersedeSQL, ev.ID, ev.IncidentID, from, to, first, last)
		if err != nil {
			return fmt.Errorf("supersede older deliveries: %w", err)
		}
		res.Replaced += tag.RowsAffected()
	}
	for channel := range res.Queued {
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, channel); err != nil {
			return fmt.Errorf("notify workers: %w", err)
		}
	}
	return nil
}

// Rejected is an event that failed validation.
type Rejected struct {
	ID         int64     `json:"id"`
	EventID    string    `json:"event_id,omitempty"`
	Raw        []byte    `json:"-"`
	Reason     string    `json:"reason"`
	Field      string    `json:"field,omitempty"`
	Source     string    `json:"source"`
	StreamSeq  uint64    `json:"stream_seq,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
}

// Reject stores an invalid event with its raw bytes and the reason.
// Raw bytes over 1 MiB are truncated: the reason says how big it was.
func (s *Store) Reject(ctx context.Context, r Rejected) error {
	raw := r.Raw
	if len(raw) > event.MaxPayloadBytes {
		raw = raw[:event.MaxPayloadBytes]
	}
	var eventID *string
	if r.EventID != "" && len(r.EventID) <= 1000 {
		eventID = &r.EventID
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO rejected_events (event_id, raw, reason, field, source, stream_seq)
		VALUES ($1, $2, $3, $4, $5, nullif($6, 0))`,
		eventID, raw, r.Reason, r.Field, r.Source, int64(r.StreamSeq))
	if err != nil {
		return fmt.Errorf("store rejected event: %w", err)
	}
	return nil
}

// ListRejected returns the most recent rejected events, newest first.
func (s *Store) ListRejected(ctx context.Context, limit int) ([]Rejected, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, coalesce(event_id, ''), raw, reason, field, source, coalesce(stream_seq, 0), received_at
		FROM rejected_events ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list rejected events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Rejected, error) {
		var x Rejected
		var seq int64
		err := r.Scan(&x.ID, &x.EventID, &x.Raw, &x.Reason, &x.Field, &x.Source, &seq, &x.ReceivedAt)
		x.StreamSeq = uint64(seq)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("list rejected events: %w", err)
	}
	return out, nil
}

// StoredEvent is an event as stored, with its arrival order.
type StoredEvent struct {
	event.Event
	Seq        int64     `json:"-"`
	ReceivedAt time.Time `json:"received_at"`
}

const eventColumns = `id, incident_id, kind, status, impact, title, body, components,
	occurred_at, scheduled_for, scheduled_until, notify, seq, received_at`

func scanEvent(row pgx.Row) (StoredEvent, error) {
	var e StoredEvent
	err := row.Scan(&e.ID, &e.IncidentID, &e.Kind, &e.Status, &e.Impact, &e.Title, &e.Body, &e.Components,
		&e.OccurredAt, &e.ScheduledFor, &e.ScheduledUntil, &e.Notify, &e.Seq, &e.ReceivedAt)
	return e, err
}

// GetEvent returns one stored event.
func (s *Store) GetEvent(ctx context.Context, id string) (StoredEvent, error) {
	e, err := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventColumns+` FROM events WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return StoredEvent{}, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return StoredEvent{}, fmt.Errorf("get event %q: %w", id, err)
	}
	return e, nil
}

// IncidentEvents returns the updates of an incident in timeline order
// (occurred_at, then arrival).
func (s *Store) IncidentEvents(ctx context.Context, incidentID string) ([]StoredEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE incident_id = $1 ORDER BY occurred_at, seq`, incidentID)
	if err != nil {
		return nil, fmt.Errorf("list incident %q: %w", incidentID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredEvent, error) { return scanEvent(r) })
	if err != nil {
		return nil, fmt.Errorf("list incident %q: %w", incidentID, err)
	}
	return out, nil
}
