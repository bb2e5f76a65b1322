-- Work that one replica at a time does (a sweeper), held under a lease that another replica
-- takes over when the holder stops renewing it; with the holder's progress.
CREATE TABLE singletons (
    name        TEXT PRIMARY KEY NOT NULL,
    owner       TEXT NOT NULL,
    lease_until INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT '{}'
) STRICT;

-- Each expiry of a timer property is announced once.
CREATE TABLE timer_expiries (
    blueprint  TEXT NOT NULL,
    identifier TEXT NOT NULL,
    property   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (blueprint, identifier, property, expires_at)
) STRICT;
