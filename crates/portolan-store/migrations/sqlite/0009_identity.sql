-- Sign-in: the credentials and role of each `_user` entity that can sign in, its sessions and
-- its API tokens; and the permission documents of blueprints and actions.
CREATE TABLE accounts (
    user_id       TEXT PRIMARY KEY,
    -- Argon2id in PHC form; NULL for accounts that sign in only through SSO or by token.
    password_hash TEXT,
    role          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- Sessions, found by the SHA-256 of the cookie value; `expires_at` is the absolute end.
CREATE TABLE sessions (
    id_sha256    TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id);

-- Personal and service-account API tokens, stored only as the SHA-256 of the token.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    created_by   TEXT NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- `blueprint:<id>` or `action:<id>` → its permissions document (JSON text).
CREATE TABLE permissions (
    resource    TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
) STRICT;
