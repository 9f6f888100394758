-- +goose Up
-- Process-wide secrets generated on first use, such as the key that signs
-- manage and unsubscribe links when CRIER_TOKEN_SECRET is not set.
CREATE TABLE secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE secrets;
