-- workload-ca schema v2 (Postgres): stored CRLs, pre-signed OCSP responses,
-- delegated OCSP responder certificates, and a per-issuer revocation counter.

-- revocation_counters.seq counts the revocations of an issuer's leaves. A
-- trigger bumps it in the revoking transaction, so the CRL publisher can tell
-- with one primary-key read whether its last CRL (crls.revocation_seq) is
-- behind, without comparing timestamps written by different replicas' clocks.
CREATE TABLE revocation_counters (
    issuer_id text PRIMARY KEY REFERENCES issuers (id),
    seq       bigint NOT NULL CHECK (seq > 0)
);

CREATE FUNCTION certificates_count_revocation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO revocation_counters (issuer_id, seq) VALUES (NEW.issuer_id, 1)
    ON CONFLICT (issuer_id) DO UPDATE SET seq = revocation_counters.seq + 1;
    RETURN NEW;
END;
$$;

CREATE TRIGGER certificates_revoked
    AFTER UPDATE OF status ON certificates
    FOR EACH ROW WHEN (NEW.status = 'revoked' AND OLD.status <> 'revoked')
    EXECUTE FUNCTION certificates_count_revocation();

CREATE TRIGGER certificates_inserted_revoked
    AFTER INSERT ON certificates
    FOR EACH ROW WHEN (NEW.status = 'revoked')
    EXECUTE FUNCTION certificates_count_revocation();

-- The latest CRL of each issuer (GetCRL, CRLInfo: primary key). PutCRL only
-- replaces it with a higher number.
CREATE TABLE crls (
    issuer_id      text PRIMARY KEY REFERENCES issuers (id),
    number         bigint NOT NULL CHECK (number > 0),
    this_update    timestamptz NOT NULL,
    next_update    timestamptz NOT NULL,
    revocation_seq bigint NOT NULL CHECK (revocation_seq >= 0),
    entries        integer NOT NULL CHECK (entries >= 0),
    der            bytea NOT NULL
);

-- One pre-signed OCSP response per certificate (GetOCSPResponse: primary key).
CREATE TABLE ocsp_responses (
    serial         text COLLATE "C" PRIMARY KEY REFERENCES certificates (serial),
    issuer_id      text NOT NULL REFERENCES issuers (id),
    revoked        boolean NOT NULL,
    this_update    timestamptz NOT NULL,
    next_update    timestamptz NOT NULL,
    cert_not_after timestamptz NOT NULL,
    der            bytea NOT NULL
);

-- OCSPWork: responses of an issuer due for refresh.
CREATE INDEX ocsp_responses_refresh_idx ON ocsp_responses (issuer_id, next_update);
-- OCSPOldest (metrics): the oldest response of an issuer's unexpired leaves.
CREATE INDEX ocsp_responses_age_idx ON ocsp_responses (issuer_id, this_update);

-- Delegated OCSP responder certificates, several per issuer over time.
CREATE TABLE ocsp_responders (
    serial     text COLLATE "C" PRIMARY KEY,
    issuer_id  text NOT NULL REFERENCES issuers (id),
    key_uri    text NOT NULL,
    cert_der   bytea NOT NULL,
    not_before timestamptz NOT NULL,
    not_after  timestamptz NOT NULL,
    created_at timestamptz NOT NULL
);

-- LatestOCSPResponder: the one of an issuer that expires last.
CREATE INDEX ocsp_responders_issuer_idx ON ocsp_responders (issuer_id, not_after, created_at);
