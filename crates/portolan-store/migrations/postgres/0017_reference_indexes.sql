-- One index on the references' targets instead of two (as on SQLite): a lookup by target and one
-- by relation and target both start from the target's identifier, and each reference written
-- kept one index fewer up to date.
DROP INDEX entity_references_target;
DROP INDEX entity_references_via_target;
CREATE INDEX entity_references_to ON entity_references (target_identifier, via, target_blueprint);

-- Each reference knows its source's blueprint, and the owning-team references of a blueprint are
-- indexed by team: a count of a blueprint's entities per team (the catalog table's team facet)
-- reads this index instead of every entity's document.
ALTER TABLE entity_references ADD COLUMN source_blueprint TEXT NOT NULL DEFAULT '';
UPDATE entity_references r SET source_blueprint = e.blueprint FROM entities e WHERE e.id = r.source_id;
CREATE INDEX entity_references_team ON entity_references (source_blueprint, target_identifier)
    WHERE via = '$team';
