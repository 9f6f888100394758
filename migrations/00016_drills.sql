-- +goose Up
-- Drills are events of their own kind (status "test"). NOT VALID, then
-- VALIDATE: checking the existing rows lets writes go on.
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('incident', 'maintenance', 'drill')) NOT VALID;
ALTER TABLE events VALIDATE CONSTRAINT events_kind_check;

-- +goose Down
DELETE FROM events WHERE kind = 'drill';
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('incident', 'maintenance')) NOT VALID;
