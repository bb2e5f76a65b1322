-- Actions and their runs. Documents are JSON text; the columns beside them are what lists,
-- filters and claims need to find rows.
CREATE TABLE actions (
    identifier  TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
) STRICT;

CREATE TABLE runs (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    action      TEXT NOT NULL,
    blueprint   TEXT,
    entity      TEXT,
    status      TEXT NOT NULL,
    backend     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    -- For runner runs: who holds the run, until when.
    lease_owner TEXT,
    lease_until INTEGER,
    document    TEXT NOT NULL
) STRICT;
CREATE INDEX runs_action ON runs (action, seq);
CREATE INDEX runs_entity ON runs (blueprint, entity, seq);
CREATE INDEX runs_created_by ON runs (created_by, seq);
CREATE INDEX runs_status ON runs (status, backend, seq);

-- For runner runs: every label a runner needs to claim the run.
CREATE TABLE run_labels (
    run_id      TEXT NOT NULL,
    label       TEXT NOT NULL,
    PRIMARY KEY (run_id, label)
) STRICT;

CREATE TABLE run_logs (
    seq         INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    stream      TEXT NOT NULL,
    message     TEXT NOT NULL
) STRICT;
CREATE INDEX run_logs_run ON run_logs (run_id, seq);

-- The entities a run created, changed or deleted.
CREATE TABLE run_entities (
    run_id      TEXT NOT NULL,
    blueprint   TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    change      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (run_id, blueprint, identifier)
) STRICT;
CREATE INDEX run_entities_entity ON run_entities (blueprint, identifier);

-- Secret values, encrypted by the server (nonce and ciphertext); never returned.
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
) STRICT;

-- Runner tokens, stored only as the SHA-256 of the token.
CREATE TABLE runner_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    labels       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;

-- Values the server generates once and keeps (such as its key when none is configured).
CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
) STRICT;
