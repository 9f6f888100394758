-- +goose Up
-- A claim used to write a new version of the delivery with an entry in
-- every index (the primary key, deliveries_once and deliveries_leased),
-- since it changed the state, which deliveries_ready's predicate reads, and
-- the lease, which deliveries_leased indexes. Now no index reads a column
-- that a claim changes, so PostgreSQL updates the row in place on its page
-- (a HOT update), with no index entry at all:
--
-- * deliveries_ready holds every delivery that is due at some time, queued
--   or being sent: next_attempt_at is NULL once a delivery is finished
--   (sent, failed, superseded, ...), and a CHECK keeps the two in step.
--   A claim skips the rows being sent by their state, and takes those whose
--   lease expired, in the same statement: deliveries_leased and the
--   periodic reap that used it are gone.
-- * Half of every page is left free at insert (fillfactor 50), so that the
--   claimed version of each row fits next to it. The table ends no larger:
--   after 100,000 subscribers on both channels were sent to, 76 MB of
--   table and 52 MB of indexes, against 85 MB and 60 MB before.
--
-- Claim plus outcome cost PostgreSQL about a quarter less CPU (pgbench,
-- 100,000 deliveries in batches of 200); see docs/performance.md.
--
-- The UPDATE below rewrites every finished delivery once: on a large ledger,
-- run `crier migrate` at a quiet time (docs/operations.md).
ALTER TABLE deliveries ALTER COLUMN next_attempt_at DROP NOT NULL;
UPDATE deliveries SET next_attempt_at = NULL WHERE state NOT IN ('queued', 'sending');
ALTER TABLE deliveries ADD CONSTRAINT deliveries_due_while_pending
    CHECK ((next_attempt_at IS NOT NULL) = (state IN ('queued', 'sending')));
DROP INDEX deliveries_ready;
DROP INDEX deliveries_leased;
CREATE INDEX deliveries_ready ON deliveries (channel, next_attempt_at, id) WHERE next_attempt_at IS NOT NULL;
ALTER TABLE deliveries SET (fillfactor = 50);

-- +goose Down
ALTER TABLE deliveries RESET (fillfactor);
DROP INDEX deliveries_ready;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_due_while_pending;
UPDATE deliveries SET next_attempt_at = updated_at WHERE next_attempt_at IS NULL;
ALTER TABLE deliveries ALTER COLUMN next_attempt_at SET NOT NULL;
CREATE INDEX deliveries_ready ON deliveries (channel, next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX deliveries_leased ON deliveries (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
