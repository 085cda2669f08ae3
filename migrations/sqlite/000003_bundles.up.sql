-- Trust bundle versions (SQLite). Every published bundle is kept: the served
-- bundle is the one with the highest sequence, and a rollback republishes an
-- earlier version's content under a new, higher sequence. Times are INTEGER
-- unix microseconds, UTC.
CREATE TABLE bundle_versions (
    sequence         INTEGER PRIMARY KEY NOT NULL CHECK (sequence > 0), -- LatestBundleVersion, ListBundleVersions
    created_at       INTEGER NOT NULL,
    content          TEXT NOT NULL,          -- canonical JSON from pkg/bundle, kept byte for byte
    reason           TEXT NOT NULL,
    actor            TEXT NOT NULL,
    rolled_back_from INTEGER REFERENCES bundle_versions (sequence),
    source_digest    TEXT NOT NULL DEFAULT '', -- digest of the issuer states the content was computed from
    CHECK (rolled_back_from IS NULL OR rolled_back_from < sequence)
);
