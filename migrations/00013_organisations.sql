-- +goose Up
-- A care home is a record: a key (slug), a name, and the home's landline
-- for the last escalation step. Its contacts are subscribers, each a
-- primary (told at once) or an escalation contact (told when the home has
-- not acknowledged in time). A subscriber without an organisation is a
-- home of one.
CREATE TABLE organisations (
    key        text PRIMARY KEY CHECK (key ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name       text NOT NULL CHECK (name <> '' AND length(name) <= 200),
    phone      text CHECK (phone IS NULL OR phone ~ '^\+[1-9][0-9]{6,14}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX organisations_name ON organisations (lower(name));

ALTER TABLE subscribers
    ADD COLUMN organisation_key text REFERENCES organisations (key) ON UPDATE CASCADE ON DELETE SET NULL,
    ADD COLUMN role text NOT NULL DEFAULT 'primary' CHECK (role IN ('primary', 'escalation'));
CREATE INDEX subscribers_organisation ON subscribers (organisation_key) WHERE organisation_key IS NOT NULL;

-- Today's free-text organisation names become records, one per distinct
-- name, keyed by its slug ("Oakview Care Home" -> oakview-care-home; a
-- second name with the same slug gets -2, and so on).
WITH names AS (
    SELECT DISTINCT btrim(organisation) AS name FROM subscribers WHERE btrim(organisation) <> ''
), slugs AS (
    SELECT name, rtrim(left(coalesce(nullif(btrim(regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g'), '-'), ''), 'home'), 56), '-') AS base
    FROM names
), numbered AS (
    SELECT name, base, row_number() OVER (PARTITION BY base ORDER BY name) AS n FROM slugs
)
INSERT INTO organisations (key, name)
SELECT CASE WHEN n = 1 THEN base ELSE base || '-' || n END, left(name, 200) FROM numbered;

UPDATE subscribers s SET organisation_key = o.key
FROM organisations o WHERE o.name = left(btrim(s.organisation), 200);

ALTER TABLE subscribers DROP COLUMN organisation;

-- +goose Down
ALTER TABLE subscribers ADD COLUMN organisation text NOT NULL DEFAULT '';
UPDATE subscribers s SET organisation = o.name FROM organisations o WHERE o.key = s.organisation_key;
ALTER TABLE subscribers DROP COLUMN organisation_key, DROP COLUMN role;
DROP TABLE organisations;
