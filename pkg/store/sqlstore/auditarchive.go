package sqlstore

import (
	"bytes"
	"context"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RemoveAuditPrefix removes an archived prefix of the audit log; see
// store.AuditArchiveStore. The DELETEs pass the audit log's append-only
// guard (migration 13) only inside the window Dialect.ArchiveWindow opens
// and closes in this transaction.
func (o *Ops) RemoveAuditPrefix(ctx context.Context, through int64, throughHash []byte, record store.AuditEntry) (store.AuditEntry, int64, error) {
	if through < 1 {
		return store.AuditEntry{}, 0, o.errorf("remove audit prefix through %d: nothing to remove", through)
	}
	open, closeWindow := o.d.ArchiveWindow(through)
	var out store.AuditEntry
	var n int64
	err := o.w.InTx(ctx, func(tx Tx) error {
		// Archivers are serialised among themselves; appends are not held
		// up by the bulk delete, only by the last two statements.
		if err := tx.Lock(ctx, LockAuditArchive); err != nil {
			return o.errorf("lock audit archiving: %w", o.d.MapErr(err))
		}
		var h []byte
		err := tx.QueryRow(ctx, `SELECT hash FROM audit_log WHERE seq = $1`, through).Scan(&h)
		switch {
		case o.d.IsNoRows(err):
			return o.errorf("%w: audit entry %d is not in the log", store.ErrConflict, through)
		case err != nil:
			return o.errorf("read audit entry %d: %w", through, o.d.MapErr(err))
		case !bytes.Equal(h, throughHash):
			return o.errorf("%w: audit entry %d no longer has the archived hash", store.ErrConflict, through)
		}
		if _, err := tx.Exec(ctx, open.Query, open.Args...); err != nil {
			return o.errorf("open the archive window: %w", o.d.MapErr(err))
		}
		// Everything before the cut first, without the append lock (primary
		// key audit_log (seq)); entry through stays for the record to link
		// after the head, which may be through itself.
		removed, err := tx.Exec(ctx, `DELETE FROM audit_log WHERE seq < $1`, through)
		if err != nil {
			return o.errorf("remove archived audit entries: %w", o.d.MapErr(err))
		}
		n = removed
		if out, err = tx.AppendAudit(ctx, record); err != nil {
			return err
		}
		if removed, err = tx.Exec(ctx, `DELETE FROM audit_log WHERE seq = $1`, through); err != nil {
			return o.errorf("remove archived audit entry %d: %w", through, o.d.MapErr(err))
		}
		n += removed
		if _, err := tx.Exec(ctx, closeWindow.Query, closeWindow.Args...); err != nil {
			return o.errorf("close the archive window: %w", o.d.MapErr(err))
		}
		return nil
	})
	if err != nil {
		return store.AuditEntry{}, 0, err
	}
	return out, n, nil
}
