-- JWT-SVID signing keys (SQLite). The key itself lives in the key store;
-- this table is the lifecycle: prepared (published, not yet signing), active
-- (the one key that signs), retiring (no longer signing, still published
-- until every token it signed has expired), retired (gone from the bundle).
-- Times are INTEGER unix microseconds, UTC, from the injected clock.
CREATE TABLE jwt_keys (
    kid          TEXT PRIMARY KEY NOT NULL,      -- RFC 7638 JWK thumbprint
    key_uri      TEXT NOT NULL,
    alg          TEXT NOT NULL CHECK (alg IN ('ES256', 'ES384', 'RS256')),
    state        TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'retiring', 'retired')),
    public_jwk   TEXT NOT NULL,                  -- the public key as a JWK (JSON)
    created_at   INTEGER NOT NULL,
    activated_at INTEGER,
    retiring_at  INTEGER,                        -- when it stopped signing
    retired_at   INTEGER,                        -- when it left the bundle
    CHECK ((state = 'prepared') = (activated_at IS NULL)),
    CHECK ((state IN ('retiring', 'retired')) = (retiring_at IS NOT NULL)),
    CHECK ((state = 'retired') = (retired_at IS NOT NULL))
);

-- ListJWTKeys: oldest first.
CREATE INDEX jwt_keys_created_idx ON jwt_keys (created_at, kid);
-- At most one key signs, and at most one waits to (InsertJWTKey, ActivateJWTKey).
CREATE UNIQUE INDEX jwt_keys_one_active_idx ON jwt_keys (state) WHERE state = 'active';
CREATE UNIQUE INDEX jwt_keys_one_prepared_idx ON jwt_keys (state) WHERE state = 'prepared';
