-- Signed checkpoints of the audit log's head (pkg/audit/checkpoint.go). Each
-- row says "entry seq had hash `hash` at `time`", signed with the checkpoint
-- key in the key store; `ca audit verify` checks the signatures with a public
-- key it does not take from this database, and that the chain still reaches
-- every checkpoint. kind is periodic, startup or shutdown.
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    seq        INTEGER NOT NULL CHECK (seq >= 0),   -- 0: the log was empty
    hash       BLOB,                                -- entry seq's hash; NULL when seq = 0
    time       INTEGER NOT NULL,                    -- unix microseconds
    kind       TEXT NOT NULL,
    key_id     TEXT NOT NULL,                       -- hex SHA-256 of the signing key's SubjectPublicKeyInfo
    signature  BLOB NOT NULL
);

-- LatestAuditCheckpoint: ORDER BY time DESC, id DESC LIMIT 1.
CREATE INDEX audit_checkpoints_time ON audit_checkpoints (time, id);

-- Append-only, like audit_log. Tampering tests drop these triggers first.
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE refused');
END;
