-- Relation and ownership rules ("system = shop", "$team containsAny [...]") are answered from
-- the references, by relation name and target.
CREATE INDEX entity_references_via_target ON entity_references (via, target_identifier);
