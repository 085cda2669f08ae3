-- Archiving old audit entries (`ca audit archive --remove`, pkg/audit/archive.go).
-- audit_log stays append-only, with one narrow exception: a DELETE of rows whose
-- seq is at most the through value in audit_archive_window. That table is empty
-- except inside the one transaction of the store's RemoveAuditPrefix, which
-- inserts the value, deletes the archived rows, appends the audit_archive entry
-- and empties the table again before it commits. UPDATE stays refused.
CREATE TABLE audit_archive_window (
    through INTEGER NOT NULL CHECK (through > 0)
);

DROP TRIGGER IF EXISTS audit_log_no_delete;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.seq > (SELECT COALESCE(MAX(through), 0) FROM audit_archive_window)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
