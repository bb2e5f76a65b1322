-- The audit log: one row per change or denied attempt, in a hash chain. `record` is the canonical
-- JSON the hash covers; the other columns repeat parts of it so the log can be searched.
CREATE TABLE audit_log (
    seq           BIGINT PRIMARY KEY,
    at            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    origin        TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    blueprint     TEXT,
    run_id        TEXT,
    status        TEXT NOT NULL,
    record        TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_resource ON audit_log (resource_type, resource_id, seq);
CREATE INDEX audit_blueprint ON audit_log (blueprint, seq);
CREATE INDEX audit_actor ON audit_log (actor, seq);
CREATE INDEX audit_run ON audit_log (run_id, seq);
CREATE INDEX audit_at ON audit_log (at);

-- The newest record's number and hash: appends take it in turn, and `audit verify` checks that the
-- log still ends there.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
