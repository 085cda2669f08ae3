-- Retention (issue 16): the indexes the pruner's batches rely on.
-- PruneExpiredCertificates reads certificates_expiry_idx (not_after) of
-- migration 000001; no new certificates index is needed.

-- PruneOCSPResponses: responses of certificates expired before a cut-off,
-- oldest first.
CREATE INDEX ocsp_responses_cert_expiry_idx ON ocsp_responses (cert_not_after);

-- PruneEndedHolds: released holds by release time (unreleased ones are read
-- by identity_holds_until_idx of migration 000008).
CREATE INDEX identity_holds_released_idx ON identity_holds (released_at) WHERE released_at IS NOT NULL;
