CREATE INDEX certificates_repository_idx
    ON certificates (json_extract(provenance, '$.claims.repository'), created_at, serial);
DROP INDEX certificates_repository_col_idx;
DROP INDEX certificates_lineage_idx;
DROP INDEX certificates_renewed_from_idx;
ALTER TABLE certificates DROP COLUMN superseded_by;
ALTER TABLE certificates DROP COLUMN lineage_started_at;
ALTER TABLE certificates DROP COLUMN subject;
ALTER TABLE certificates DROP COLUMN token_issuer;
ALTER TABLE certificates DROP COLUMN repository;
ALTER TABLE certificates DROP COLUMN lineage;
