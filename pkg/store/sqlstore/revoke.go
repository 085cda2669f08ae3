package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RevokeCertificate revokes an active certificate and appends e in the same
// transaction; see store.Store for the already-revoked case.
func (o *Ops) RevokeCertificate(ctx context.Context, serial string, at time.Time, reason string, e store.AuditEntry) (store.Certificate, store.AuditEntry, error) {
	var cert store.Certificate
	var out store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		var err error
		cert, err = o.scanCert(tx.QueryRow(ctx, `
			UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
			WHERE serial = $1 AND status <> 'revoked'
			RETURNING `+o.d.CertColumns,
			serial, o.time(at), reason))
		if o.d.IsNoRows(err) {
			cert, err = o.scanCert(tx.QueryRow(ctx, `SELECT `+o.d.CertColumns+` FROM certificates WHERE serial = $1`, serial))
			if o.d.IsNoRows(err) {
				return o.errorf("revoke %s: %w", serial, store.ErrNotFound)
			}
			if err != nil {
				return o.errorf("revoke %s: %w", serial, o.d.MapErr(err))
			}
			return o.errorf("revoke %s: already revoked: %w", serial, store.ErrConflict)
		}
		if err != nil {
			return o.errorf("revoke %s: %w", serial, o.d.MapErr(err))
		}
		out, err = tx.AppendAudit(ctx, e)
		return err
	})
	if errors.Is(err, store.ErrConflict) {
		return cert, store.AuditEntry{}, err
	}
	if err != nil {
		return store.Certificate{}, store.AuditEntry{}, err
	}
	return cert, out, nil
}
