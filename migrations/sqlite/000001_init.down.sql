DROP TABLE IF EXISTS crl_numbers;
DROP TABLE IF EXISTS used_tokens;
DROP TRIGGER IF EXISTS audit_log_no_delete;
DROP TRIGGER IF EXISTS audit_log_no_update;
DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS certificates;
DROP TABLE IF EXISTS issuers;
