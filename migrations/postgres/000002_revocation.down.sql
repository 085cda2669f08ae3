DROP TABLE IF EXISTS ocsp_responders;
DROP TABLE IF EXISTS ocsp_responses;
DROP TABLE IF EXISTS crls;
DROP TRIGGER IF EXISTS certificates_inserted_revoked ON certificates;
DROP TRIGGER IF EXISTS certificates_revoked ON certificates;
DROP FUNCTION IF EXISTS certificates_count_revocation();
DROP TABLE IF EXISTS revocation_counters;
