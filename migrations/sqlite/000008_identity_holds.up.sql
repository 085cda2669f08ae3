-- workload-ca schema v8 (SQLite): identity holds. A hold refuses new
-- certificates, renewals and JWT-SVIDs for one SPIFFE ID until `until`, or
-- until it is released. Rows are kept after they end (released or expired).
-- Times are INTEGER unix microseconds, UTC.
CREATE TABLE identity_holds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    spiffe_id   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    placed_by   TEXT NOT NULL,
    placed_at   INTEGER NOT NULL,
    until       INTEGER NOT NULL,
    released_at INTEGER,
    released_by TEXT,
    CHECK (until > placed_at),
    CHECK ((released_at IS NULL) = (released_by IS NULL))
);

-- ActiveHold (every enrollment, renewal and JWT-SVID) and ReleaseHolds: the
-- unreleased holds of one identity, by end.
CREATE INDEX identity_holds_identity_idx ON identity_holds (spiffe_id, until) WHERE released_at IS NULL;
-- ActiveHolds (listing, dashboard, metrics): unreleased holds by end.
CREATE INDEX identity_holds_until_idx ON identity_holds (until) WHERE released_at IS NULL;

-- RevokeMany with a SPIFFE ID scope: the identity's active certificates use
-- the existing identity index (spiffe_id first); no new certificates index.
