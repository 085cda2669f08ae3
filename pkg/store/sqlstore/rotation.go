package sqlstore

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RecordRotation inserts one rotation's issuers and its audit entry in one
// transaction under LockRotation, so the check for a prepared issuer and the
// inserts see every earlier rotation committed; see store.IssuerRotation.
func (o *Ops) RecordRotation(ctx context.Context, issuers []store.Issuer, e store.AuditEntry) (store.AuditEntry, error) {
	if len(issuers) == 0 {
		return store.AuditEntry{}, o.errorf("record rotation: no issuers: %w", store.ErrInvalidQuery)
	}
	for _, is := range issuers {
		if is.State != store.IssuerPrepared {
			return store.AuditEntry{}, o.errorf("record rotation: issuer %q is %s, not prepared: %w", is.ID, is.State, store.ErrInvalidQuery)
		}
	}
	var out store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		if err := tx.Lock(ctx, LockRotation); err != nil {
			return o.errorf("lock rotation: %w", o.d.MapErr(err))
		}
		// A sequential scan: the issuers table holds a handful of rows.
		var prepared string
		err := tx.QueryRow(ctx, `SELECT id FROM issuers WHERE state = 'prepared' ORDER BY id LIMIT 1`).Scan(&prepared)
		switch {
		case err == nil:
			return o.errorf("record rotation: issuer %q is prepared: %w", prepared, store.ErrConflict)
		case !o.d.IsNoRows(err):
			return o.errorf("record rotation: %w", o.d.MapErr(err))
		}
		for _, is := range issuers {
			if err := o.insertIssuer(ctx, tx, is, "record rotation: issuer"); err != nil {
				return err
			}
		}
		out, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// AbandonIssuers retires prepared issuers with their audit entry in one
// transaction under LockRotation; see store.IssuerRotation.
func (o *Ops) AbandonIssuers(ctx context.Context, ids []string, at time.Time, e store.AuditEntry) (store.AuditEntry, error) {
	if len(ids) == 0 {
		return store.AuditEntry{}, o.errorf("abandon: no issuer named: %w", store.ErrInvalidQuery)
	}
	var out store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		if err := tx.Lock(ctx, LockRotation); err != nil {
			return o.errorf("lock rotation: %w", o.d.MapErr(err))
		}
		for _, id := range ids {
			// Primary key lookup.
			var state store.IssuerState
			err := tx.QueryRow(ctx, `SELECT state FROM issuers WHERE id = $1`+o.d.ForUpdate, id).Scan(&state)
			if o.d.IsNoRows(err) {
				return o.errorf("abandon issuer %q: %w", id, store.ErrNotFound)
			}
			if err != nil {
				return o.errorf("abandon issuer %q: %w", id, o.d.MapErr(err))
			}
			if state != store.IssuerPrepared {
				return o.errorf("abandon issuer %q: it is %s, not prepared: %w", id, state, store.ErrConflict)
			}
			if _, err := tx.Exec(ctx, `UPDATE issuers SET state = 'retired', updated_at = $2 WHERE id = $1 AND state = 'prepared'`,
				id, o.time(at)); err != nil {
				return o.errorf("abandon issuer %q: %w", id, o.d.MapErr(err))
			}
		}
		var err error
		out, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}
