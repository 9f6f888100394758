-- +goose Up
-- Codes texted to confirm a mobile number (double opt-in for SMS). One
-- pending code per number: asking again replaces it. Only a keyed hash of
-- the code is kept; a code expires, and is spent after a few wrong tries.
CREATE TABLE sms_codes (
    phone         text PRIMARY KEY CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    subscriber_id bigint NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    code_hash     bytea NOT NULL,
    attempts      int NOT NULL DEFAULT 0,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sms_codes_subscriber ON sms_codes (subscriber_id);
CREATE INDEX sms_codes_expires ON sms_codes (expires_at);

-- +goose Down
DROP TABLE sms_codes;
