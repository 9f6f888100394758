-- +goose Up
-- delivery_attempts needs no id: nothing reads it, and each row cost a
-- sequence call and an insert into its index. The natural key replaces both
-- the id's index and delivery_attempts_delivery (it leads with delivery_id,
-- which store.DeleteSubscriber looks up): one index per attempt, not two.
--
-- The key also makes recording idempotent: store.Record inserts with ON
-- CONFLICT DO NOTHING, so outcomes written again after an error that came
-- after the commit add nothing. An attempt number recurs for a delivery only
-- after a manual retry (store.RetryFailed resets it), with a later start.
--
-- Copies that such retries wrote before this key existed go first.
DELETE FROM delivery_attempts a USING delivery_attempts b
WHERE a.delivery_id = b.delivery_id AND a.attempt = b.attempt
  AND a.started_at = b.started_at AND a.id > b.id;
ALTER TABLE delivery_attempts DROP COLUMN id;
DROP INDEX delivery_attempts_delivery;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_pkey
    PRIMARY KEY (delivery_id, attempt, started_at);

-- +goose Down
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_pkey;
ALTER TABLE delivery_attempts ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);
