-- Scorecards and the results stored on each entity.
ALTER TABLE entities ADD COLUMN scorecards TEXT NOT NULL DEFAULT '{}';

CREATE TABLE scorecards (
    blueprint  TEXT NOT NULL REFERENCES blueprints (identifier) ON DELETE CASCADE,
    identifier TEXT NOT NULL,
    document   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (blueprint, identifier)
) STRICT;
