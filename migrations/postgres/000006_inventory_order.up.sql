-- Inventory pages as bounded index range scans (ListCertificates orders).

-- IdentityPrefix pages are ordered by identity, newest first within one
-- (store.OrderIdentity): one forward range scan of this index for the
-- prefix, from the cursor on. Exact Identity pages (newest first) read the
-- same index. Replaces certificates_identity_idx.
CREATE INDEX certificates_identity_order_idx ON certificates (spiffe_id, created_at DESC, serial DESC);
DROP INDEX certificates_identity_idx;

-- ExpiringWithin pages are ordered soonest-expiring first
-- (store.OrderExpiry): one range scan of this index over the window, from
-- the cursor on. Replaces certificates_expiry_keyset_idx (which read the
-- whole window and sorted it).
CREATE INDEX certificates_expiry_order_idx ON certificates (status, not_after, serial);
DROP INDEX certificates_expiry_keyset_idx;
