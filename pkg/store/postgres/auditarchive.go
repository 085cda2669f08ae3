package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// auditArchiveLockKey is the pg_advisory_xact_lock key that serialises
// RemoveAuditPrefix calls (not appends: AuditLockKey).
const auditArchiveLockKey int64 = 0x7763615f61726368 // "wca_arch"

// RemoveAuditPrefix removes an archived prefix of the audit log; see
// store.AuditArchiveStore. The DELETE passes the audit_log_guard trigger
// (migration 13) only for rows up to the transaction-local setting
// workload_ca.audit_archive_through.
func (s *Store) RemoveAuditPrefix(ctx context.Context, through int64, throughHash []byte, record store.AuditEntry) (store.AuditEntry, int64, error) {
	if through < 1 {
		return store.AuditEntry{}, 0, fmt.Errorf("postgres: remove audit prefix through %d: nothing to remove", through)
	}
	var out store.AuditEntry
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// Archivers are serialised among themselves; appends are not held
		// up by the bulk delete, only by the last two statements.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, auditArchiveLockKey); err != nil {
			return fmt.Errorf("postgres: lock audit archiving: %w", mapErr(err))
		}
		var h []byte
		err := tx.QueryRow(ctx, `SELECT hash FROM audit_log WHERE seq = $1`, through).Scan(&h)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%w: audit entry %d is not in the log", store.ErrConflict, through)
		case err != nil:
			return fmt.Errorf("postgres: read audit entry %d: %w", through, mapErr(err))
		case !bytes.Equal(h, throughHash):
			return fmt.Errorf("%w: audit entry %d no longer has the archived hash", store.ErrConflict, through)
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('workload_ca.audit_archive_through', $1, true)`,
			strconv.FormatInt(through, 10)); err != nil {
			return fmt.Errorf("postgres: open the archive window: %w", mapErr(err))
		}
		// Everything before the cut first, without the append lock (primary
		// key audit_log (seq)); entry through stays for the record to link
		// after the head, which may be through itself.
		tag, err := tx.Exec(ctx, `DELETE FROM audit_log WHERE seq < $1`, through)
		if err != nil {
			return fmt.Errorf("postgres: remove archived audit entries: %w", mapErr(err))
		}
		n = tag.RowsAffected()
		if out, err = appendAudit(ctx, tx, record); err != nil {
			return err
		}
		if tag, err = tx.Exec(ctx, `DELETE FROM audit_log WHERE seq = $1`, through); err != nil {
			return fmt.Errorf("postgres: remove archived audit entry %d: %w", through, mapErr(err))
		}
		n += tag.RowsAffected()
		if _, err := tx.Exec(ctx, `SELECT set_config('workload_ca.audit_archive_through', '', true)`); err != nil {
			return fmt.Errorf("postgres: close the archive window: %w", mapErr(err))
		}
		return nil
	})
	if err != nil {
		return store.AuditEntry{}, 0, err
	}
	return out, n, nil
}
