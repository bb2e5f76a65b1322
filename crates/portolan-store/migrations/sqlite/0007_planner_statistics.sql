-- Give the query planner the shape of a large catalog before ANALYZE has run: many entities
-- per blueprint, few entities per relation target. Without it SQLite guesses that a blueprint
-- selects ten rows and scans a whole blueprint where the references index would find a handful
-- (measured: a recompute counting one system's services scanned all 200k services).
ANALYZE;
DELETE FROM sqlite_stat1 WHERE tbl IN ('entities', 'entity_references');
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('entities', 'sqlite_autoindex_entities_1', '1000000 100000 1'),
    ('entity_references', 'entity_references_source', '3000000 3'),
    ('entity_references', 'entity_references_target', '3000000 300000 20'),
    ('entity_references', 'entity_references_via_target', '3000000 300000 20');
ANALYZE sqlite_schema;
