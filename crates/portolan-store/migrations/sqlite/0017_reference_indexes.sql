-- One index on the references' targets instead of two: a lookup by target (what points at this
-- entity) and one by relation and target (who is in this system, who does this team own) both
-- start from the target's identifier. Every reference written kept three indexes up to date; the
-- third was a fifth of a bulk ingest's time in SQLite (measured: 47 ms → 26 ms for the 4,000
-- references of 1,000 services, and 18 ms less at commit).
DROP INDEX entity_references_target;
DROP INDEX entity_references_via_target;
CREATE INDEX entity_references_to ON entity_references (target_identifier, via, target_blueprint);
DELETE FROM sqlite_stat1 WHERE tbl = 'entity_references' AND idx <> 'entity_references_source';
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('entity_references', 'entity_references_to', '3000000 20 20 20');
ANALYZE sqlite_schema;

-- Each reference knows its source's blueprint, and the owning-team references of a blueprint are
-- indexed by team: a count of a blueprint's entities per team (the catalog table's team facet)
-- reads this index instead of every entity's document.
ALTER TABLE entity_references ADD COLUMN source_blueprint TEXT NOT NULL DEFAULT '';
UPDATE entity_references SET source_blueprint = (SELECT blueprint FROM entities WHERE id = source_id);
CREATE INDEX entity_references_team ON entity_references (source_blueprint, target_identifier)
    WHERE via = '$team';
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('entity_references', 'entity_references_team', '1000000 100000 1000');
ANALYZE sqlite_schema;
