-- workload-ca schema v2 (SQLite): stored CRLs, pre-signed OCSP responses,
-- delegated OCSP responder certificates, and a per-issuer revocation counter.
-- Times are INTEGER unix microseconds, UTC.

-- revocation_counters.seq counts the revocations of an issuer's leaves; the
-- triggers bump it in the revoking transaction, so the CRL publisher can tell
-- with one primary-key read whether its last CRL (crls.revocation_seq) is
-- behind.
CREATE TABLE revocation_counters (
    issuer_id TEXT PRIMARY KEY NOT NULL REFERENCES issuers (id),
    seq       INTEGER NOT NULL CHECK (seq > 0)
);

CREATE TRIGGER certificates_revoked
AFTER UPDATE OF status ON certificates
FOR EACH ROW WHEN NEW.status = 'revoked' AND OLD.status <> 'revoked'
BEGIN
    INSERT INTO revocation_counters (issuer_id, seq) VALUES (NEW.issuer_id, 1)
    ON CONFLICT (issuer_id) DO UPDATE SET seq = seq + 1;
END;

CREATE TRIGGER certificates_inserted_revoked
AFTER INSERT ON certificates
FOR EACH ROW WHEN NEW.status = 'revoked'
BEGIN
    INSERT INTO revocation_counters (issuer_id, seq) VALUES (NEW.issuer_id, 1)
    ON CONFLICT (issuer_id) DO UPDATE SET seq = seq + 1;
END;

-- The latest CRL of each issuer (GetCRL, CRLInfo: primary key). PutCRL only
-- replaces it with a higher number.
CREATE TABLE crls (
    issuer_id      TEXT PRIMARY KEY NOT NULL REFERENCES issuers (id),
    number         INTEGER NOT NULL CHECK (number > 0),
    this_update    INTEGER NOT NULL,
    next_update    INTEGER NOT NULL,
    revocation_seq INTEGER NOT NULL CHECK (revocation_seq >= 0),
    entries        INTEGER NOT NULL CHECK (entries >= 0),
    der            BLOB NOT NULL
);

-- One pre-signed OCSP response per certificate (GetOCSPResponse: primary key).
CREATE TABLE ocsp_responses (
    serial         TEXT PRIMARY KEY NOT NULL REFERENCES certificates (serial),
    issuer_id      TEXT NOT NULL REFERENCES issuers (id),
    revoked        INTEGER NOT NULL CHECK (revoked IN (0, 1)),
    this_update    INTEGER NOT NULL,
    next_update    INTEGER NOT NULL,
    cert_not_after INTEGER NOT NULL,
    der            BLOB NOT NULL
);

-- OCSPWork: responses of an issuer due for refresh.
CREATE INDEX ocsp_responses_refresh_idx ON ocsp_responses (issuer_id, next_update);
-- OCSPOldest (metrics): the oldest response of an issuer's unexpired leaves.
CREATE INDEX ocsp_responses_age_idx ON ocsp_responses (issuer_id, this_update);

-- Delegated OCSP responder certificates, several per issuer over time.
CREATE TABLE ocsp_responders (
    serial     TEXT PRIMARY KEY NOT NULL,
    issuer_id  TEXT NOT NULL REFERENCES issuers (id),
    key_uri    TEXT NOT NULL,
    cert_der   BLOB NOT NULL,
    not_before INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- LatestOCSPResponder: the one of an issuer that expires last.
CREATE INDEX ocsp_responders_issuer_idx ON ocsp_responders (issuer_id, not_after, created_at);
