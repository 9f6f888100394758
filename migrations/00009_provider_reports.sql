-- +goose Up
-- A provider's delivery report (a Twilio status callback) can arrive before
-- crier has recorded the send it reports on: the provider answered, the
-- outcome waits to be written with others (deliver.Config.FlushInterval),
-- or the process died before writing it and the lease will bring it back.
-- Such a report is kept here and applied once the send is recorded
-- (store.KeepProviderStatus, store.ApplyKeptStatuses), never dropped.
CREATE TABLE provider_reports (
    provider_id text PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('delivered', 'undelivered', 'failed')),
    error_code  text,
    message     text,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE provider_reports;
