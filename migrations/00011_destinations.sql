-- +goose Up
-- Destinations that are URLs rather than people's addresses: a signed
-- webhook, a Microsoft Teams and a Slack incoming webhook, one of each per
-- subscriber. An administrator sets them (no double opt-in: the URL is a
-- system's, not a person's); *_opted_out_at switches one off, and is set
-- when the destination answers 410 Gone. webhook_secret signs the webhook
-- (Standard Webhooks, whsec_ + base64); it is shown once, when made.
ALTER TABLE subscribers
    ADD COLUMN webhook_url          text CHECK (webhook_url IS NULL OR (webhook_url LIKE 'https://%' AND length(webhook_url) <= 2048)),
    ADD COLUMN webhook_secret       text,
    ADD COLUMN webhook_opted_out_at timestamptz,
    ADD COLUMN teams_url            text CHECK (teams_url IS NULL OR (teams_url LIKE 'https://%' AND length(teams_url) <= 2048)),
    ADD COLUMN teams_opted_out_at   timestamptz,
    ADD COLUMN slack_url            text CHECK (slack_url IS NULL OR (slack_url LIKE 'https://%' AND length(slack_url) <= 2048)),
    ADD COLUMN slack_opted_out_at   timestamptz,
    ADD CONSTRAINT subscribers_webhook_signed CHECK (webhook_url IS NULL OR webhook_secret IS NOT NULL);

-- A subscriber is reachable on at least one channel.
ALTER TABLE subscribers DROP CONSTRAINT subscribers_check;
ALTER TABLE subscribers ADD CONSTRAINT subscribers_reachable
    CHECK (email IS NOT NULL OR phone IS NOT NULL OR webhook_url IS NOT NULL OR teams_url IS NOT NULL OR slack_url IS NOT NULL);

-- The ledger takes the new channels. NOT VALID, then VALIDATE: checking
-- the existing rows takes a lock that lets sending go on.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check
    CHECK (channel IN ('email', 'sms', 'webhook', 'teams', 'slack')) NOT VALID;
ALTER TABLE deliveries VALIDATE CONSTRAINT deliveries_channel_check;

-- +goose Down
ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check CHECK (channel IN ('email', 'sms')) NOT VALID;
ALTER TABLE subscribers DROP CONSTRAINT subscribers_reachable;
ALTER TABLE subscribers ADD CONSTRAINT subscribers_check CHECK (email IS NOT NULL OR phone IS NOT NULL) NOT VALID;
ALTER TABLE subscribers
    DROP CONSTRAINT subscribers_webhook_signed,
    DROP COLUMN webhook_url, DROP COLUMN webhook_secret, DROP COLUMN webhook_opted_out_at,
    DROP COLUMN teams_url, DROP COLUMN teams_opted_out_at,
    DROP COLUMN slack_url, DROP COLUMN slack_opted_out_at;
