-- +goose Up
-- deliveries_leased was partial on state = 'sending'. store.Record's
-- UPDATE also says state = 'sending', so the planner could use this index
-- to find the rows to update, and did whenever its statistics said few
-- rows were leased (as after every quiet spell): it then read every leased
-- row of every worker and hash-joined them with the batch, 1,000 rows
-- read to update 100 while a large event is being sent. Keyed on the lease
-- itself, the index still serves store.Reap (lease_expires_at < now()
-- implies a lease) but not Record, which finds its rows by id. The rows in
-- it are the same: only a claim sets a lease, and whatever ends the
-- sending state clears it.
DROP INDEX deliveries_leased;
CREATE INDEX deliveries_leased ON deliveries (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

-- +goose Down
DROP INDEX deliveries_leased;
CREATE INDEX deliveries_leased ON deliveries (lease_expires_at) WHERE state = 'sending';
