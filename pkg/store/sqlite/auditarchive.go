package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RemoveAuditPrefix removes an archived prefix of the audit log; see
// store.AuditArchiveStore. The audit_log_no_delete trigger (migration 13)
// lets a DELETE through only for rows up to the value in
// audit_archive_window, which this transaction sets and clears.
func (s *Store) RemoveAuditPrefix(ctx context.Context, through int64, throughHash []byte, record store.AuditEntry) (store.AuditEntry, int64, error) {
	if through < 1 {
		return store.AuditEntry{}, 0, fmt.Errorf("sqlite: remove audit prefix through %d: nothing to remove", through)
	}
	var out store.AuditEntry
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var h []byte
		err := tx.QueryRowContext(ctx, `SELECT hash FROM audit_log WHERE seq = ?`, through).Scan(&h)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%w: audit entry %d is not in the log", store.ErrConflict, through)
		case err != nil:
			return fmt.Errorf("sqlite: read audit entry %d: %w", through, mapErr(err))
		case !bytes.Equal(h, throughHash):
			return fmt.Errorf("%w: audit entry %d no longer has the archived hash", store.ErrConflict, through)
		}
		if out, err = appendAudit(ctx, tx, record); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_archive_window (through) VALUES (?)`, through); err != nil {
			return fmt.Errorf("sqlite: open the archive window: %w", mapErr(err))
		}
		// Primary key audit_log (seq).
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_log WHERE seq <= ?`, through)
		if err != nil {
			return fmt.Errorf("sqlite: remove archived audit entries: %w", mapErr(err))
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: remove archived audit entries: %w", mapErr(err))
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM audit_archive_window`); err != nil {
			return fmt.Errorf("sqlite: close the archive window: %w", mapErr(err))
		}
		return nil
	})
	if err != nil {
		return store.AuditEntry{}, 0, err
	}
	return out, n, nil
}
