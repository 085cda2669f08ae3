-- OCSPWork: responses of an issuer due for refresh.
CREATE INDEX IF NOT EXISTS ocsp_responses_refresh_idx ON ocsp_responses (issuer_id, next_update);
