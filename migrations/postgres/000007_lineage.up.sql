-- Renewal lineage (issue 12). Every certificate belongs to a lineage: the
-- enrollment that began it and each renewal since. lineage is the first
-- serial; repository, token_issuer and subject are the enrollment's
-- provenance fields that searches use, and lineage_started_at its time
-- (reauthenticate_after counts from it): renewals inherit all five from
-- their predecessor, so searches find renewed certificates too.
-- superseded_by is the one renewal of a certificate (a certificate can be
-- renewed once): RecordIssuance sets it with a conditional update.
ALTER TABLE certificates
    ADD COLUMN lineage            text COLLATE "C" NOT NULL DEFAULT '',
    ADD COLUMN repository         text NOT NULL DEFAULT '',
    ADD COLUMN token_issuer       text NOT NULL DEFAULT '',
    ADD COLUMN subject            text NOT NULL DEFAULT '',
    ADD COLUMN lineage_started_at timestamptz,
    ADD COLUMN superseded_by      text COLLATE "C";

-- RevokeMany's descendants walk and the superseded_by backfill: the
-- renewals of a certificate.
CREATE INDEX certificates_renewed_from_idx ON certificates (renewed_from) WHERE renewed_from IS NOT NULL;

-- Backfill: follow renewed_from from every lineage's first certificate (one
-- without a predecessor, or whose predecessor is gone) and copy the first
-- certificate's provenance fields down the chain.
WITH RECURSIVE chain (serial, root) AS (
    SELECT serial, serial FROM certificates c
    WHERE c.renewed_from IS NULL
       OR NOT EXISTS (SELECT 1 FROM certificates p WHERE p.serial = c.renewed_from)
    UNION
    SELECT c.serial, chain.root FROM certificates c JOIN chain ON c.renewed_from = chain.serial
)
UPDATE certificates c SET
    lineage            = chain.root,
    repository         = coalesce(r.provenance -> 'claims' ->> 'repository', ''),
    token_issuer       = coalesce(r.provenance ->> 'token_issuer', ''),
    subject            = coalesce(r.provenance ->> 'sub', ''),
    lineage_started_at = r.created_at
FROM chain JOIN certificates r ON r.serial = chain.root
WHERE c.serial = chain.serial;

-- The earliest renewal of a certificate supersedes it (renewals made before
-- this migration could be several).
UPDATE certificates p SET superseded_by = (
    SELECT c.serial FROM certificates c WHERE c.renewed_from = p.serial
    ORDER BY c.created_at, c.serial LIMIT 1)
WHERE EXISTS (SELECT 1 FROM certificates c WHERE c.renewed_from = p.serial);

-- ListCertificates by Lineage (?lineage=), newest first within a lineage.
CREATE INDEX certificates_lineage_idx ON certificates (lineage, created_at DESC, serial DESC);

-- ListCertificates by Repository now reads the inherited column, newest
-- first within a repository. Replaces the provenance expression index of
-- migration 000005, which renewals (whose provenance has no claims) missed.
CREATE INDEX certificates_repository_col_idx ON certificates (repository, created_at DESC, serial DESC);
DROP INDEX certificates_repository_idx;
