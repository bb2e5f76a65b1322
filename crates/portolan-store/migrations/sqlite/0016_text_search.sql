-- A trigram index over titles and identifiers: `contains`, `beginsWith` and `endsWith` on them
-- (and so the portal's search) read it to find candidates instead of reading every entity. The
-- triggers keep it in the writing transaction.
CREATE VIRTUAL TABLE entity_text USING fts5 (
    title, identifier, content = 'entities', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO entity_text (entity_text) VALUES ('rebuild');

CREATE TRIGGER entity_text_insert AFTER INSERT ON entities BEGIN
    INSERT INTO entity_text (rowid, title, identifier) VALUES (new.id, new.title, new.identifier);
END;

CREATE TRIGGER entity_text_delete AFTER DELETE ON entities BEGIN
    INSERT INTO entity_text (entity_text, rowid, title, identifier)
    VALUES ('delete', old.id, old.title, old.identifier);
END;

CREATE TRIGGER entity_text_update AFTER UPDATE OF title, identifier ON entities
WHEN old.title IS NOT new.title OR old.identifier IS NOT new.identifier BEGIN
    INSERT INTO entity_text (entity_text, rowid, title, identifier)
    VALUES ('delete', old.id, old.title, old.identifier);
    INSERT INTO entity_text (rowid, title, identifier) VALUES (new.id, new.title, new.identifier);
END;
