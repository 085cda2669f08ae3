-- Trust bundle versions (Postgres). Every published bundle is kept: the
-- served bundle is the one with the highest sequence, and a rollback
-- republishes an earlier version's content under a new, higher sequence.
CREATE TABLE bundle_versions (
    sequence         bigint PRIMARY KEY CHECK (sequence > 0),  -- LatestBundleVersion, ListBundleVersions
    created_at       timestamptz NOT NULL,
    content          text NOT NULL,          -- canonical JSON from pkg/bundle, kept byte for byte
    reason           text NOT NULL,
    actor            text NOT NULL,
    rolled_back_from bigint REFERENCES bundle_versions (sequence),
    source_digest    text NOT NULL DEFAULT '', -- digest of the issuer states the content was computed from
    CHECK (rolled_back_from IS NULL OR rolled_back_from < sequence)
);
