-- workload-ca schema v1 (Postgres). Every time is written by the application
-- from its injected clock; no column defaults to now().

CREATE TABLE issuers (
    id             text PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('root', 'intermediate')),
    parent_id      text REFERENCES issuers (id),
    key_uri        text NOT NULL,
    cert_der       bytea,
    subject_key_id bytea,
    not_before     timestamptz,
    not_after      timestamptz,
    state          text NOT NULL CHECK (state IN ('prepared', 'active', 'retiring', 'retired')),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- ListIssuers: oldest first.
CREATE INDEX issuers_created_idx ON issuers (created_at, id);

CREATE TABLE certificates (
    serial            text COLLATE "C" PRIMARY KEY,     -- GetCertificate
    issuer_id         text NOT NULL REFERENCES issuers (id),
    spiffe_id         text COLLATE "C" NOT NULL,        -- byte order: prefix ranges use the index
    dns_names         text[] NOT NULL DEFAULT '{}',
    not_before        timestamptz NOT NULL,
    not_after         timestamptz NOT NULL,
    der               bytea NOT NULL,
    public_key_sha256 text NOT NULL,
    status            text NOT NULL CHECK (status IN ('active', 'revoked')),
    revoked_at        timestamptz,
    revocation_reason text,
    provenance        json,                             -- json, not jsonb: kept byte for byte
    policy_rule       text NOT NULL DEFAULT '',
    policy_version    text NOT NULL DEFAULT '',
    renewed_from      text,
    created_at        timestamptz NOT NULL,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);

-- ListCertificates without filters: keyset pagination, newest first.
CREATE INDEX certificates_created_idx ON certificates (created_at, serial);
-- ListCertificates by Identity / IdentityPrefix, newest first within an identity.
CREATE INDEX certificates_identity_idx ON certificates (spiffe_id, created_at, serial);
-- Expiry dashboards and clean-up: everything expiring before a time.
CREATE INDEX certificates_expiry_idx ON certificates (not_after);
-- ListCertificates by Status (active/expired) and ExpiringWithin.
CREATE INDEX certificates_status_expiry_idx ON certificates (status, not_after);
-- ListCertificates by IssuerID and RevokedCertificates (CRLs).
CREATE INDEX certificates_issuer_idx ON certificates (issuer_id, status, not_after);

CREATE TABLE audit_log (
    seq            bigint PRIMARY KEY CHECK (seq > 0),  -- assigned by the store, contiguous
    time           timestamptz NOT NULL,
    actor          text NOT NULL,
    action         text NOT NULL,
    target         text NOT NULL,
    decision       text NOT NULL,
    reason         text NOT NULL,
    policy_version text NOT NULL,
    request_id     text NOT NULL,
    details        bytea,                               -- raw bytes: store.AuditHash covers them as given
    prev_hash      bytea,
    hash           bytea NOT NULL
);

-- The audit log is append-only. A superuser who means to tamper (tests of
-- `ca audit verify`) can still run
--   ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

CREATE TABLE used_tokens (
    key        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- PruneUsedTokens.
CREATE INDEX used_tokens_expiry_idx ON used_tokens (expires_at);

CREATE TABLE crl_numbers (
    issuer_id   text PRIMARY KEY REFERENCES issuers (id),
    last_number bigint NOT NULL CHECK (last_number > 0)
);
