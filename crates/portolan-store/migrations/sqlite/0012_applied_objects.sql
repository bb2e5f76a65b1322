-- Catalog as code: every object `portolan apply` (or a location) wrote, under the source that
-- declared it and the file it came from. An object belongs to one source at a time; prune
-- deletes only what its own source recorded.
CREATE TABLE applied_objects (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    source     TEXT NOT NULL,
    file       TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

CREATE INDEX applied_objects_source ON applied_objects (source);

-- Locations: repositories, folders and files whose manifests are kept in step with the catalog.
CREATE TABLE locations (
    id            TEXT PRIMARY KEY,
    document      TEXT NOT NULL,   -- the location as JSON (target, branch, paths, secrets' names, status)
    next_sync_at  BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);
