DROP TABLE IF EXISTS ocsp_responders;
DROP TABLE IF EXISTS ocsp_responses;
DROP TABLE IF EXISTS crls;
DROP TRIGGER IF EXISTS certificates_inserted_revoked;
DROP TRIGGER IF EXISTS certificates_revoked;
DROP TABLE IF EXISTS revocation_counters;
