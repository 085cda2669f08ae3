CREATE INDEX certificates_status_expiry_idx ON certificates (status, not_after);

UPDATE certificates c SET provenance = (c.provenance::jsonb || jsonb_build_object('origin', l.provenance::jsonb))::json
FROM lineages l
WHERE l.lineage = c.lineage AND c.renewed_from IS NOT NULL AND c.provenance IS NOT NULL;

DROP TABLE lineages;
