-- Scorecards and the results stored on each entity.
ALTER TABLE entities ADD COLUMN scorecards JSONB NOT NULL DEFAULT '{}';

CREATE TABLE scorecards (
    blueprint  TEXT COLLATE "C" NOT NULL REFERENCES blueprints (identifier) ON DELETE CASCADE,
    identifier TEXT COLLATE "C" NOT NULL,
    document   JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (blueprint, identifier)
);
