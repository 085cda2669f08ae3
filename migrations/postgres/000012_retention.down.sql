DROP INDEX IF EXISTS identity_holds_released_idx;
DROP INDEX IF EXISTS ocsp_responses_cert_expiry_idx;
