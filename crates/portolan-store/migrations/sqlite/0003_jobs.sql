-- Background work, written in the transaction of the change that causes it (an outbox), and
-- claimed under a lease so that a worker that dies hands its work over when the lease runs out.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    dedupe_key  TEXT,
    payload     TEXT NOT NULL,
    run_after   INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until INTEGER,
    created_at  INTEGER NOT NULL
) STRICT;

-- At most one waiting (unclaimed) job per key: repeated changes coalesce.
CREATE UNIQUE INDEX jobs_waiting_key ON jobs (dedupe_key) WHERE lease_owner IS NULL;
CREATE INDEX jobs_due ON jobs (run_after);
