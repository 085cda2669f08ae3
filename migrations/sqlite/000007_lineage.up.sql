-- Renewal lineage; see the Postgres migration of the same number.
ALTER TABLE certificates ADD COLUMN lineage TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN repository TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN token_issuer TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE certificates ADD COLUMN lineage_started_at INTEGER;
ALTER TABLE certificates ADD COLUMN superseded_by TEXT;

-- RevokeMany's descendants walk and the superseded_by backfill.
CREATE INDEX certificates_renewed_from_idx ON certificates (renewed_from) WHERE renewed_from IS NOT NULL;

WITH RECURSIVE chain (serial, root) AS (
    SELECT serial, serial FROM certificates c
    WHERE c.renewed_from IS NULL
       OR NOT EXISTS (SELECT 1 FROM certificates p WHERE p.serial = c.renewed_from)
    UNION
    SELECT c.serial, chain.root FROM certificates c JOIN chain ON c.renewed_from = chain.serial
)
UPDATE certificates SET
    lineage            = (SELECT root FROM chain WHERE chain.serial = certificates.serial),
    repository         = coalesce((SELECT json_extract(r.provenance, '$.claims.repository') FROM chain JOIN certificates r ON r.serial = chain.root WHERE chain.serial = certificates.serial), ''),
    token_issuer       = coalesce((SELECT json_extract(r.provenance, '$.token_issuer') FROM chain JOIN certificates r ON r.serial = chain.root WHERE chain.serial = certificates.serial), ''),
    subject            = coalesce((SELECT json_extract(r.provenance, '$.sub') FROM chain JOIN certificates r ON r.serial = chain.root WHERE chain.serial = certificates.serial), ''),
    lineage_started_at = (SELECT r.created_at FROM chain JOIN certificates r ON r.serial = chain.root WHERE chain.serial = certificates.serial);

UPDATE certificates SET superseded_by = (
    SELECT c.serial FROM certificates c WHERE c.renewed_from = certificates.serial
    ORDER BY c.created_at, c.serial LIMIT 1);

-- ListCertificates by Lineage, newest first within a lineage.
CREATE INDEX certificates_lineage_idx ON certificates (lineage, created_at DESC, serial DESC);
-- ListCertificates by Repository (the inherited column).
CREATE INDEX certificates_repository_col_idx ON certificates (repository, created_at DESC, serial DESC);
DROP INDEX certificates_repository_idx;
