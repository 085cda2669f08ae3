-- Signed checkpoints of the audit log's head (pkg/audit/checkpoint.go). Each
-- row says "entry seq had hash `hash` at `time`", signed with the checkpoint
-- key in the key store; `ca audit verify` checks the signatures with a public
-- key it does not take from this database, and that the chain still reaches
-- every checkpoint. kind is periodic, startup or shutdown.
CREATE TABLE audit_checkpoints (
    id         bigserial PRIMARY KEY,
    seq        bigint NOT NULL CHECK (seq >= 0),   -- 0: the log was empty
    hash       bytea,                              -- entry seq's hash; NULL when seq = 0
    time       timestamptz NOT NULL,
    kind       text NOT NULL,
    key_id     text NOT NULL,                      -- hex SHA-256 of the signing key's SubjectPublicKeyInfo
    signature  bytea NOT NULL
);

-- LatestAuditCheckpoint: ORDER BY time DESC, id DESC LIMIT 1.
CREATE INDEX audit_checkpoints_time ON audit_checkpoints (time, id);

-- Append-only, like audit_log (same refusing function).
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
