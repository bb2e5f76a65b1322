-- Client credentials (Port's clientId and clientSecret): one pair per account, traded at
-- POST /v1/auth/access_token for a short-lived API token. Only the secret's SHA-256 is kept.
CREATE TABLE client_credentials (
    user_id       TEXT PRIMARY KEY,
    client_id     TEXT NOT NULL UNIQUE,
    secret_sha256 TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    created_by    TEXT NOT NULL
);
