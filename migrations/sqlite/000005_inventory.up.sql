-- Inventory: denials, provenance filters, cheap revoked pages.

-- Denials (GET /v1/denials): only denied decisions, by time.
CREATE INDEX audit_log_denials_idx ON audit_log (time) WHERE decision = 'deny';

-- ListCertificates by Repository (the provenance's repository claim).
CREATE INDEX certificates_repository_idx
    ON certificates (json_extract(provenance, '$.claims.repository'), created_at, serial);

-- ListCertificates with Status revoked.
CREATE INDEX certificates_revoked_created_idx ON certificates (created_at, serial) WHERE status = 'revoked';
