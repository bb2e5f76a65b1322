-- Each record's MAC of its hash under the audit key, which is kept outside the database (so
-- whoever can write the database cannot re-sign a rewritten log). Records written before the
-- log had a key have none; verification allows that only before the first record that has one.
ALTER TABLE audit_log ADD COLUMN mac TEXT;
