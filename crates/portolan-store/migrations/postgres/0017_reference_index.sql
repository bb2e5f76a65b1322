-- One index on the references' targets instead of two (as on SQLite): a lookup by target and one
-- by relation and target both start from the target's identifier, and each reference written
-- kept one index fewer up to date.
DROP INDEX entity_references_target;
DROP INDEX entity_references_via_target;
CREATE INDEX entity_references_to ON entity_references (target_identifier, via, target_blueprint);
