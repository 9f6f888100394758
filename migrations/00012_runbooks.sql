-- +goose Up
-- A component's runbook: guidance (what to do now, shown in the first
-- message of an incident), recovery (what to do when it is back, shown in
-- the resolution) and actions (the short choices offered when a home
-- acknowledges).
ALTER TABLE components
    ADD COLUMN guidance text   NOT NULL DEFAULT '',
    ADD COLUMN recovery text   NOT NULL DEFAULT '',
    ADD COLUMN actions  text[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE components DROP COLUMN guidance, DROP COLUMN recovery, DROP COLUMN actions;
