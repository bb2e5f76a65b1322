-- Integrations: webhooks pushed in and REST sources pulled, each with its mapping. A webhook's
-- ingest key is kept only as its SHA-256 (the URL is shown once, when the key is made).
CREATE TABLE integrations (
    id            TEXT PRIMARY KEY,
    document      TEXT NOT NULL,   -- the integration as JSON (mapping, security, source, status)
    kind          TEXT NOT NULL,   -- webhook or rest
    key_hash      TEXT UNIQUE,
    next_sync_at  BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Each webhook request as it arrived and what it became, kept for the integration's retention.
-- A request identifier is taken once per integration: a replay finds it.
CREATE TABLE integration_events (
    integration  TEXT NOT NULL,
    id           TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    request_id   TEXT,
    state        TEXT NOT NULL,
    document     TEXT NOT NULL,
    PRIMARY KEY (integration, id)
);

CREATE UNIQUE INDEX integration_events_request ON integration_events (integration, request_id);
CREATE INDEX integration_events_received ON integration_events (integration, received_at, id);
