-- +goose Up
-- A home's acknowledgement of an incident: once per incident per home
-- (an organisation's key, or "subscriber:<id>" for a home of one), by any
-- of its contacts or by the support desk. The first acknowledgement
-- counts; later ones change nothing.
CREATE TABLE acknowledgements (
    incident_id     text NOT NULL,
    home            text NOT NULL,
    event_id        text NOT NULL,
    subscriber_id   bigint,
    via             text NOT NULL CHECK (via IN ('link', 'sms', 'voice', 'api')),
    by_name         text NOT NULL DEFAULT '',
    action          text NOT NULL DEFAULT '',
    note            text NOT NULL DEFAULT '',
    acknowledged_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, home)
);

-- +goose Down
DROP TABLE acknowledgements;
