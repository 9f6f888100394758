-- +goose Up
-- Admin dashboard sessions are kept server-side, so that signing out ends
-- a session at once on every process, and "sign out everywhere" ends them
-- all. The cookie carries the id, signed (internal/httpapi/admin.go).
CREATE TABLE admin_sessions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Inbound texts already acted on, by Twilio's MessageSid: a validly signed
-- request replayed (a START after a STOP) changes nothing the second time.
-- Rows older than the replay window are deleted as new ones come.
CREATE TABLE inbound_messages (
    message_sid text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE inbound_messages;
DROP TABLE admin_sessions;
