DROP TABLE IF EXISTS crl_numbers;
DROP TABLE IF EXISTS used_tokens;
DROP TABLE IF EXISTS audit_log;
DROP FUNCTION IF EXISTS audit_log_refuse_change();
DROP TABLE IF EXISTS certificates;
DROP TABLE IF EXISTS issuers;
