-- +goose Up

-- The component catalog: a tree of keys such as "atlas-sync/sync-pod-a".
-- The parent of a key is the key up to its last "/"; it must exist.
CREATE TABLE components (
    key         text PRIMARY KEY
                CHECK (key ~ '^[a-z0-9][a-z0-9-]{0,62}(/[a-z0-9][a-z0-9-]{0,62})*$'),
    parent_key  text REFERENCES components (key),
    name        text NOT NULL CHECK (name <> ''),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((parent_key IS NULL AND position('/' IN key) = 0)
        OR (parent_key IS NOT NULL AND key = parent_key || '/' || split_part(key, '/', -1)))
);

-- People who are told. Each channel has its own confirmation (double opt-in)
-- and opt-out time; a channel is used only when confirmed and not opted out.
CREATE TABLE subscribers (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email               text CHECK (email IS NULL OR (email <> '' AND length(email) <= 254)),
    phone               text CHECK (phone IS NULL OR phone ~ '^\+[1-9][0-9]{6,14}$'),
    name                text NOT NULL DEFAULT '',
    organisation        text NOT NULL DEFAULT '',
    email_confirmed_at  timestamptz,
    email_opted_out_at  timestamptz,
    sms_confirmed_at    timestamptz,
    sms_opted_out_at    timestamptz,
    manage_token_hash   bytea UNIQUE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (email IS NOT NULL OR phone IS NOT NULL)
);
CREATE UNIQUE INDEX subscribers_email_key ON subscribers (lower(email));
CREATE UNIQUE INDEX subscribers_phone_key ON subscribers (phone);

CREATE TABLE subscriptions (
    component_key text   NOT NULL REFERENCES components (key) ON DELETE CASCADE,
    subscriber_id bigint NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component_key, subscriber_id)
);
CREATE INDEX subscriptions_subscriber ON subscriptions (subscriber_id);

-- Every accepted event, with every field of the wire format, the raw payload
-- and when it was received. seq is the arrival order (ties of occurred_at).
CREATE TABLE events (
    id              text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    incident_id     text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('incident', 'maintenance')),
    status          text NOT NULL,
    impact          text NOT NULL CHECK (impact IN ('none', 'minor', 'major', 'critical')),
    title           text NOT NULL,
    body            text NOT NULL,
    components      text[] NOT NULL,
    occurred_at     timestamptz NOT NULL,
    scheduled_for   timestamptz,
    scheduled_until timestamptz,
    notify          boolean NOT NULL,
    raw             bytea NOT NULL,
    stream_seq      bigint,
    received_at     timestamptz NOT NULL DEFAULT now(),
    -- fanned_out_at is set when every delivery of the event is committed;
    -- until then a redelivered event resumes its fan-out.
    fanned_out_at   timestamptz
);
CREATE INDEX events_incident ON events (incident_id, occurred_at, seq);

-- Events that failed validation: kept with their raw bytes and the reason.
CREATE TABLE rejected_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    text,
    raw         bytea NOT NULL,
    reason      text NOT NULL,
    field       text NOT NULL DEFAULT '',
    source      text NOT NULL,
    stream_seq  bigint,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_events_received ON rejected_events (received_at);

-- The delivery ledger: the queue and the audit log. One row per
-- (event, subscriber, channel); address is the snapshot used for sending.
--
-- event_id and subscriber_id carry no foreign keys: per-row FK triggers cost
-- about 40% of a 200,000-row fan-out. Rows are only ever created by fan-out
-- from the event and subscribers read in the same transaction, events are
-- never deleted, and deleting a subscriber deletes their deliveries and
-- attempts explicitly (store.DeleteSubscriber).
CREATE TABLE deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         text   NOT NULL,
    incident_id      text   NOT NULL,
    occurred_at      timestamptz NOT NULL,
    subscriber_id    bigint NOT NULL,
    channel          text   NOT NULL CHECK (channel IN ('email', 'sms')),
    address          text   NOT NULL,
    state            text   NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'sending', 'sent', 'delivered', 'undelivered',
                                      'failed', 'superseded', 'suppressed')),
    attempts         int    NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_error       text,
    error_code       text,
    provider_id      text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- queued_at starts the maximum-age clock: fan-out, or a manual retry.
    queued_at        timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    -- One delivery per (subscriber, channel, event). An event belongs to one
    -- incident, so including incident_id does not weaken the rule, and the
    -- index then also serves every look-up by (subscriber, channel,
    -- incident): superseding, opt-out, erasure.
    CONSTRAINT deliveries_once UNIQUE (subscriber_id, channel, incident_id, event_id)
);
CREATE INDEX deliveries_event ON deliveries (event_id, id);
-- Every index here is maintained on each state change (claim, record) of
-- every delivery, so there are as few as the queries need.
CREATE INDEX deliveries_ready ON deliveries (channel, next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX deliveries_leased ON deliveries (lease_expires_at) WHERE state = 'sending';
-- Twilio status callbacks find a text by its message SID.
CREATE UNIQUE INDEX deliveries_provider_id ON deliveries (provider_id) WHERE channel = 'sms' AND provider_id IS NOT NULL;

-- One row per send attempt: who was told what, and when.
CREATE TABLE delivery_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  bigint NOT NULL, -- deliveries.id; no FK, written in bulk (see deliveries)
    attempt      int    NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    outcome      text   NOT NULL CHECK (outcome IN ('sent', 'retry', 'failed', 'released')),
    provider_id  text,
    error_code   text,
    error        text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);

-- +goose Down
DROP TABLE delivery_attempts;
DROP TABLE deliveries;
DROP TABLE rejected_events;
DROP TABLE events;
DROP TABLE subscriptions;
DROP TABLE subscribers;
DROP TABLE components;
