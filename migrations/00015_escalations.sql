-- +goose Up
-- A home that has not acknowledged an incident in time is escalated to:
-- step 1 tells its escalation contacts. Steps are rows due at a time, not
-- timers: they survive restarts, and a claim (FOR UPDATE SKIP LOCKED)
-- runs each once however many processes there are.
CREATE TABLE escalations (
    incident_id text        NOT NULL,
    home        text        NOT NULL,
    step        smallint    NOT NULL CHECK (step >= 1),
    event_id    text        NOT NULL,
    due_at      timestamptz NOT NULL,
    state       text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'skipped')),
    ran_at      timestamptz,
    detail      text        NOT NULL DEFAULT '',
    PRIMARY KEY (incident_id, home, step)
);
CREATE INDEX escalations_due ON escalations (due_at) WHERE state = 'pending';

-- Deliveries an escalation step made carry the step.
ALTER TABLE deliveries ADD COLUMN escalation_step smallint;

-- +goose Down
ALTER TABLE deliveries DROP COLUMN escalation_step;
DROP TABLE escalations;
