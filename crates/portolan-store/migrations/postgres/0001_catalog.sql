-- The catalog: blueprints, entities, and the references between entities.
-- Identifiers use the "C" collation so their order (and so cursor pagination) is the same
-- byte order as on SQLite, whatever the database's locale.
CREATE TABLE blueprints (
    identifier TEXT COLLATE "C" PRIMARY KEY,
    document   JSONB NOT NULL,
    created_at BIGINT NOT NULL,        -- milliseconds since the epoch
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE entities (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    blueprint  TEXT COLLATE "C" NOT NULL REFERENCES blueprints (identifier),
    identifier TEXT COLLATE "C" NOT NULL,
    title      TEXT,
    icon       TEXT,
    team       JSONB NOT NULL,
    properties JSONB NOT NULL,
    relations  JSONB NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE (blueprint, identifier)
);

CREATE TABLE entity_references (
    source_id         BIGINT NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    via               TEXT NOT NULL,
    target_blueprint  TEXT COLLATE "C" NOT NULL,
    target_identifier TEXT COLLATE "C" NOT NULL
);

CREATE INDEX entity_references_source ON entity_references (source_id);
CREATE INDEX entity_references_target ON entity_references (target_blueprint, target_identifier);
