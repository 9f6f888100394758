-- +goose Up
-- Critical first (DESIGN.md, "Scheduling"): every delivery carries the
-- priority of its event, and the claim takes the highest priority that is
-- due, FIFO within it. The ready index leads with the priority, so the claim
-- is still one forward index scan that stops after its limit: no sort of
-- the queue. Values (event.Priority): 3 critical, 2 major, 1 minor or none,
-- 0 maintenance and anything else routine.
--
-- The column's default is a constant, so adding it rewrites nothing; only
-- the deliveries still pending take their event's priority.
ALTER TABLE deliveries ADD COLUMN priority smallint NOT NULL DEFAULT 0;
UPDATE deliveries d
SET priority = CASE WHEN e.kind <> 'incident' THEN 0
                    WHEN e.impact = 'critical' THEN 3
                    WHEN e.impact = 'major' THEN 2
                    ELSE 1 END
FROM events e
WHERE e.id = d.event_id AND d.next_attempt_at IS NOT NULL;
DROP INDEX deliveries_ready;
CREATE INDEX deliveries_ready ON deliveries (channel, priority DESC, next_attempt_at, id)
    WHERE next_attempt_at IS NOT NULL;

-- Token buckets shared by every crier process of the deployment: the pace
-- of each channel (CRIER_EMAIL_RATE, CRIER_SMS_RATE) and the abuse limits
-- of the public pages, per client address or phone number. A bucket holds
-- up to its burst; it is refilled lazily, from refilled_at, by whoever
-- takes from it next, under the row's lock (store.TakeToken, store.ClaimPaced).
-- full_at is when it will be full again: from then on the row says nothing
-- that its absence would not, and it may be deleted.
CREATE TABLE rate_buckets (
    name        text PRIMARY KEY,
    tokens      double precision NOT NULL,
    refilled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    full_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX rate_buckets_full ON rate_buckets (full_at);

-- +goose Down
DROP TABLE rate_buckets;
DROP INDEX deliveries_ready;
CREATE INDEX deliveries_ready ON deliveries (channel, next_attempt_at, id) WHERE next_attempt_at IS NOT NULL;
ALTER TABLE deliveries DROP COLUMN priority;
