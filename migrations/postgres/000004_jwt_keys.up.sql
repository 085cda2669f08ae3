-- JWT-SVID signing keys (Postgres). The key itself lives in the key store
-- (HSM); this table is the lifecycle every replica agrees on: prepared
-- (published in the bundle, not yet signing), active (the one key that
-- signs), retiring (no longer signing, still published until every token it
-- signed has expired), retired (gone from the bundle). Times are written by
-- the application from its injected clock.
CREATE TABLE jwt_keys (
    kid          text COLLATE "C" PRIMARY KEY,   -- RFC 7638 JWK thumbprint
    key_uri      text NOT NULL,
    alg          text NOT NULL CHECK (alg IN ('ES256', 'ES384', 'RS256')),
    state        text NOT NULL CHECK (state IN ('prepared', 'active', 'retiring', 'retired')),
    public_jwk   text NOT NULL,                  -- the public key as a JWK (JSON)
    created_at   timestamptz NOT NULL,
    activated_at timestamptz,
    retiring_at  timestamptz,                    -- when it stopped signing
    retired_at   timestamptz,                    -- when it left the bundle
    CHECK ((state = 'prepared') = (activated_at IS NULL)),
    CHECK ((state IN ('retiring', 'retired')) = (retiring_at IS NOT NULL)),
    CHECK ((state = 'retired') = (retired_at IS NOT NULL))
);

-- ListJWTKeys: oldest first.
CREATE INDEX jwt_keys_created_idx ON jwt_keys (created_at, kid);
-- At most one key signs, and at most one waits to: concurrent rotations on
-- several replicas cannot both win (InsertJWTKey, ActivateJWTKey).
CREATE UNIQUE INDEX jwt_keys_one_active_idx ON jwt_keys (state) WHERE state = 'active';
CREATE UNIQUE INDEX jwt_keys_one_prepared_idx ON jwt_keys (state) WHERE state = 'prepared';
