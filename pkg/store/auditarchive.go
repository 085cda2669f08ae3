package store

import "context"

// AuditArchiveStore removes a prefix of the audit log that was archived
// (`ca audit archive --remove`, pkg/audit/archive.go). It is the one way
// entries ever leave the log, and it needs the migration owner on Postgres:
// the runtime role has no DELETE privilege on audit_log.
type AuditArchiveStore interface {
	// RemoveAuditPrefix, in one transaction (serialised with other
	// removals; appends wait only while the record is appended), checks
	// that the entry at through still has hash throughHash (ErrConflict
	// otherwise, or if it is gone: the log changed since the archive was
	// written), appends record to the chain (as AppendAudit does, so the
	// head is never removed), and deletes the entries with Seq <= through,
	// lifting the append-only rule for exactly those rows. It returns the
	// appended record and how many entries it deleted; on any error nothing
	// changed.
	RemoveAuditPrefix(ctx context.Context, through int64, throughHash []byte, record AuditEntry) (AuditEntry, int64, error)
}
