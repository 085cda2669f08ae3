DROP INDEX IF EXISTS certificates_expiry_keyset_idx;
DROP INDEX IF EXISTS certificates_revoked_created_idx;
DROP INDEX IF EXISTS certificates_repository_idx;
DROP INDEX IF EXISTS audit_log_denials_idx;
