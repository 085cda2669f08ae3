-- Compact certificate rows (issue 16). A renewal's provenance carried a
-- full copy of its lineage's enrollment provenance ("origin", with all the
-- token's claims: about 2 KB) on every renewal. The enrollment's provenance
-- now lives once per lineage, here, and renewals keep only their own small
-- provenance. It is not read from the lineage's first certificate because
-- retention may prune that one while the lineage still renews.
-- GetCertificate returns it as store.Certificate.Origin.
CREATE TABLE lineages (
    lineage    TEXT PRIMARY KEY NOT NULL,   -- the first serial (certificates.lineage)
    started_at INTEGER NOT NULL,
    provenance TEXT NOT NULL                -- the enrollment's provenance (JSON), byte for byte
);

-- Backfill: the provenance of each lineage's first certificate when it is
-- an enrollment, else the origin a renewal of it carries (the first row
-- inserted wins).
INSERT OR IGNORE INTO lineages (lineage, started_at, provenance)
SELECT lineage, coalesce(lineage_started_at, created_at),
       CASE WHEN renewed_from IS NULL THEN provenance ELSE json_extract(provenance, '$.origin') END
FROM certificates
WHERE lineage <> '' AND provenance IS NOT NULL
  AND (renewed_from IS NULL OR json_type(provenance, '$.origin') = 'object')
ORDER BY lineage, (renewed_from IS NOT NULL), created_at;

UPDATE certificates SET provenance = json_remove(provenance, '$.origin')
WHERE renewed_from IS NOT NULL AND json_type(provenance, '$.origin') IS NOT NULL
  AND EXISTS (SELECT 1 FROM lineages l WHERE l.lineage = certificates.lineage);

-- certificates_expiry_order_idx (status, not_after, serial) serves every
-- query this one did: a redundant prefix, dropped.
DROP INDEX certificates_status_expiry_idx;
