CREATE INDEX certificates_status_expiry_idx ON certificates (status, not_after);

UPDATE certificates SET provenance = json_set(provenance, '$.origin',
        json((SELECT l.provenance FROM lineages l WHERE l.lineage = certificates.lineage)))
WHERE renewed_from IS NOT NULL AND provenance IS NOT NULL
  AND EXISTS (SELECT 1 FROM lineages l WHERE l.lineage = certificates.lineage);

DROP TABLE lineages;
