-- Installations: integrations that run elsewhere (Port's Ocean framework) and keep their record
-- here through Port's API: type, version, configuration and sync state, as one JSON document.
CREATE TABLE installations (
    id          TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
