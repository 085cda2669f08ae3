-- ocsp_responses_refresh_idx (migration 2) served no query: OCSPWork walks the
-- issuer's certificates (certificates_issuer_idx) and probes ocsp_responses by
-- primary key, so the index only cost an insert on every response written and
-- on every refresh (next_update changes each time), and its storage.
DROP INDEX IF EXISTS ocsp_responses_refresh_idx;
