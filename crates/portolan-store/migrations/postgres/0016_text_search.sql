-- Trigram indexes over titles and identifiers, lowered as the query language lowers them, so
-- that `contains`, `beginsWith` and `endsWith` on them (and the portal's search) read an index
-- instead of every entity. pg_trgm ships with PostgreSQL (contrib) and is a trusted extension;
-- without it, the same queries work by reading every entity. The extension lives in one schema
-- per database (the first that created it), so its operator class is named with that schema.
DO $$
DECLARE
    home text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        RETURN;
    END IF;
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN unique_violation OR duplicate_object THEN
        NULL; -- created meanwhile by another migration
    END;
    SELECT n.nspname INTO home
    FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace
    WHERE x.extname = 'pg_trgm';
    EXECUTE format('CREATE INDEX entities_title_trigrams ON entities USING gin (lower((title COLLATE "C")) %I.gin_trgm_ops)', home);
    EXECUTE format('CREATE INDEX entities_identifier_trigrams ON entities USING gin (lower(identifier) %I.gin_trgm_ops)', home);
END $$;
