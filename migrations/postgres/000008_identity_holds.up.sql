-- workload-ca schema v8 (Postgres): identity holds. A hold refuses new
-- certificates, renewals and JWT-SVIDs for one SPIFFE ID until `until`, or
-- until it is released. Rows are kept after they end (released or expired),
-- as the inventory's history; only the audit log is authoritative history.
CREATE TABLE identity_holds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    spiffe_id   text COLLATE "C" NOT NULL,
    reason      text NOT NULL,
    placed_by   text NOT NULL,
    placed_at   timestamptz NOT NULL,
    until       timestamptz NOT NULL,
    released_at timestamptz,
    released_by text,
    CHECK (until > placed_at),
    CHECK ((released_at IS NULL) = (released_by IS NULL))
);

-- ActiveHold (every enrollment, renewal and JWT-SVID) and ReleaseHolds: the
-- unreleased holds of one identity, by end.
CREATE INDEX identity_holds_identity_idx ON identity_holds (spiffe_id, until) WHERE released_at IS NULL;
-- ActiveHolds (listing, dashboard, metrics): unreleased holds by end.
CREATE INDEX identity_holds_until_idx ON identity_holds (until) WHERE released_at IS NULL;

-- RevokeMany with a SPIFFE ID scope: the identity's active certificates.
-- certificates_identity_order_idx (spiffe_id, created_at DESC, serial DESC)
-- already leads with spiffe_id; no new certificates index is needed.
