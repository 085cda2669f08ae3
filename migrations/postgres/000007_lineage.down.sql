CREATE INDEX certificates_repository_idx
    ON certificates (((provenance -> 'claims' ->> 'repository')), created_at, serial);
DROP INDEX certificates_repository_col_idx;
DROP INDEX certificates_lineage_idx;
DROP INDEX certificates_renewed_from_idx;
ALTER TABLE certificates
    DROP COLUMN superseded_by,
    DROP COLUMN lineage_started_at,
    DROP COLUMN subject,
    DROP COLUMN token_issuer,
    DROP COLUMN repository,
    DROP COLUMN lineage;
