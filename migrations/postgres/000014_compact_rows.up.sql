-- Compact certificate rows (issue 16). A renewal's provenance carried a
-- full copy of its lineage's enrollment provenance ("origin", with all the
-- token's claims: about 2 KB) on every renewal: an hourly renewal wrote it
-- 24 times a day. The enrollment's provenance now lives once per lineage,
-- here, and renewals keep only their own small provenance. It is not read
-- from the lineage's first certificate because retention may prune that
-- one while the lineage still renews. GetCertificate returns it as
-- store.Certificate.Origin (policy re-check on renewal reads it).
CREATE TABLE lineages (
    lineage    text COLLATE "C" PRIMARY KEY,   -- the first serial (certificates.lineage)
    started_at timestamptz NOT NULL,
    provenance json NOT NULL                   -- the enrollment's provenance, byte for byte
);

-- Backfill: the provenance of each lineage's first certificate when it is
-- an enrollment, else the origin a renewal of it carries.
INSERT INTO lineages (lineage, started_at, provenance)
SELECT DISTINCT ON (lineage) lineage, coalesce(lineage_started_at, created_at),
       CASE WHEN renewed_from IS NULL THEN provenance ELSE provenance -> 'origin' END
FROM certificates
WHERE lineage <> '' AND provenance IS NOT NULL
  AND (renewed_from IS NULL OR provenance -> 'origin' IS NOT NULL)
ORDER BY lineage, (renewed_from IS NOT NULL), created_at;

UPDATE certificates c SET provenance = (c.provenance::jsonb - 'origin')::json
WHERE c.renewed_from IS NOT NULL AND c.provenance::jsonb ? 'origin'
  AND EXISTS (SELECT 1 FROM lineages l WHERE l.lineage = c.lineage);

-- certificates_expiry_order_idx (status, not_after, serial) serves every
-- query this one did (ExpiryBuckets, status and expiry filters): a
-- redundant prefix, dropped.
DROP INDEX certificates_status_expiry_idx;
