-- Inventory pages as bounded index range scans (ListCertificates orders);
-- see the Postgres migration of the same number.
CREATE INDEX certificates_identity_order_idx ON certificates (spiffe_id, created_at DESC, serial DESC);
DROP INDEX certificates_identity_idx;
CREATE INDEX certificates_expiry_order_idx ON certificates (status, not_after, serial);
