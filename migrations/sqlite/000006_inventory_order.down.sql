DROP INDEX IF EXISTS certificates_expiry_order_idx;
CREATE INDEX IF NOT EXISTS certificates_identity_idx ON certificates (spiffe_id, created_at, serial);
DROP INDEX IF EXISTS certificates_identity_order_idx;
