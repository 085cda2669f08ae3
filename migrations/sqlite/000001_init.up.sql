-- workload-ca schema v1 (SQLite). Times are INTEGER unix microseconds, UTC,
-- written by the application from its injected clock; no column defaults to
-- the current time.

CREATE TABLE issuers (
    id             TEXT PRIMARY KEY NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('root', 'intermediate')),
    parent_id      TEXT REFERENCES issuers (id),
    key_uri        TEXT NOT NULL,
    cert_der       BLOB,
    subject_key_id BLOB,
    not_before     INTEGER,
    not_after      INTEGER,
    state          TEXT NOT NULL CHECK (state IN ('prepared', 'active', 'retiring', 'retired')),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- ListIssuers: oldest first.
CREATE INDEX issuers_created_idx ON issuers (created_at, id);

CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY NOT NULL,        -- GetCertificate
    issuer_id         TEXT NOT NULL REFERENCES issuers (id),
    spiffe_id         TEXT NOT NULL,
    dns_names         TEXT NOT NULL DEFAULT '[]',       -- JSON array of strings
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL,
    der               BLOB NOT NULL,
    public_key_sha256 TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    revoked_at        INTEGER,
    revocation_reason TEXT,
    provenance        TEXT,                             -- JSON, kept byte for byte
    policy_rule       TEXT NOT NULL DEFAULT '',
    policy_version    TEXT NOT NULL DEFAULT '',
    renewed_from      TEXT,
    created_at        INTEGER NOT NULL,
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
    seq            INTEGER PRIMARY KEY NOT NULL CHECK (seq > 0), -- assigned by the store, contiguous
    time           INTEGER NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    decision       TEXT NOT NULL,
    reason         TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    details        BLOB,                                -- raw bytes: store.AuditHash covers them as given
    prev_hash      BLOB,
    hash           BLOB NOT NULL
);

-- The audit log is append-only. Tampering tests drop these triggers first.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;

CREATE TABLE used_tokens (
    key        TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);

-- PruneUsedTokens.
CREATE INDEX used_tokens_expiry_idx ON used_tokens (expires_at);

CREATE TABLE crl_numbers (
    issuer_id   TEXT PRIMARY KEY NOT NULL REFERENCES issuers (id),
    last_number INTEGER NOT NULL CHECK (last_number > 0)
);
