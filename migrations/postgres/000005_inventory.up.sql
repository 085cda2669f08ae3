-- Inventory: denials, provenance filters, cheap revoked pages.

-- Denials (GET /v1/denials): only denied decisions, by time.
CREATE INDEX audit_log_denials_idx ON audit_log (time) WHERE decision = 'deny';

-- ListCertificates by Repository (the provenance's repository claim),
-- newest first within a repository.
CREATE INDEX certificates_repository_idx
    ON certificates (((provenance -> 'claims' ->> 'repository')), created_at, serial);

-- ListCertificates with Status revoked: revoked leaves are few, so their
-- keyset order gets its own small index instead of a filtered full scan.
CREATE INDEX certificates_revoked_created_idx ON certificates (created_at, serial) WHERE status = 'revoked';

-- ListCertificates with ExpiringWithin: the expiry range read from the index
-- alone (created_at and serial included for the keyset order), then the
-- newest of it sorted; the query keeps the planner off the created_at scan.
CREATE INDEX certificates_expiry_keyset_idx ON certificates (status, not_after) INCLUDE (created_at, serial);
