-- Work that one replica at a time does (a sweeper), held under a lease that another replica
-- takes over when the holder stops renewing it; with the holder's progress.
CREATE TABLE singletons (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    state       JSONB NOT NULL DEFAULT '{}'
);

-- Each expiry of a timer property is announced once.
CREATE TABLE timer_expiries (
    blueprint  TEXT NOT NULL,
    identifier TEXT NOT NULL,
    property   TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (blueprint, identifier, property, expires_at)
);
