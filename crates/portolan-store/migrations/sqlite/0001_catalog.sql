-- The catalog: blueprints, entities, and the references between entities.
CREATE TABLE blueprints (
    identifier TEXT PRIMARY KEY NOT NULL,
    document   TEXT NOT NULL,          -- the blueprint as JSON
    created_at INTEGER NOT NULL,       -- milliseconds since the epoch
    created_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL
) STRICT;

CREATE TABLE entities (
    id         INTEGER PRIMARY KEY,
    blueprint  TEXT NOT NULL REFERENCES blueprints (identifier),
    identifier TEXT NOT NULL,
    title      TEXT,
    icon       TEXT,
    team       TEXT NOT NULL,          -- JSON array of _team identifiers
    properties TEXT NOT NULL,          -- JSON object
    relations  TEXT NOT NULL,          -- JSON object
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE (blueprint, identifier)
) STRICT;

-- One row per pointer from an entity to another (relation, owning team, team property), so a
-- delete can find what still points at its target without scanning documents.
CREATE TABLE entity_references (
    source_id         INTEGER NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    via               TEXT NOT NULL,
    target_blueprint  TEXT NOT NULL,
    target_identifier TEXT NOT NULL
) STRICT;

CREATE INDEX entity_references_source ON entity_references (source_id);
CREATE INDEX entity_references_target ON entity_references (target_blueprint, target_identifier);
