package sqlstore

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RevokeMany revokes every active certificate the scope selects and appends
// one audit entry per revoked certificate in the same transaction; see
// store.Store.
func (o *Ops) RevokeMany(ctx context.Context, scope store.RevokeScope, at time.Time, reason string, e store.AuditEntry) ([]store.Certificate, []store.AuditEntry, error) {
	if err := scope.Check(at); err != nil {
		return nil, nil, o.errorf("%w", err)
	}
	what, arg := scope.Serial, scope.Serial
	// On Postgres the selected rows are locked in serial order (the
	// subquery's FOR UPDATE), so two bulk revocations that overlap queue
	// instead of deadlocking; SQLite's one writer serialises them.
	var sel string
	switch {
	case scope.SPIFFEID != "":
		// Index certificates_identity_order_idx (spiffe_id first).
		what, arg = scope.SPIFFEID, scope.SPIFFEID
		sel = `SELECT serial FROM certificates
			WHERE spiffe_id = $1 AND status = 'active' AND not_after > $2
			ORDER BY serial` + o.d.ForUpdate
	case scope.Descendants:
		// The descendants are walked over renewed_from
		// (certificates_renewed_from_idx, migration 000007).
		sel = `WITH RECURSIVE d (serial) AS (
				SELECT ` + o.d.Text("$1") + `
				UNION
				SELECT c.serial FROM certificates c JOIN d ON c.renewed_from = d.serial
			) SELECT c.serial FROM certificates c JOIN d ON c.serial = d.serial
			WHERE c.status = 'active' ORDER BY c.serial` + o.forUpdateOf("c")
	default:
		sel = `SELECT serial FROM certificates WHERE serial = $1 AND status = 'active'` + o.d.ForUpdate
	}
	var certs []store.Certificate
	var entries []store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		if scope.Serial != "" {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM certificates WHERE serial = $1`, scope.Serial).Scan(&one)
			if o.d.IsNoRows(err) {
				return o.errorf("revoke many %s: %w", scope.Serial, store.ErrNotFound)
			}
			if err != nil {
				return o.errorf("revoke many %s: %w", scope.Serial, o.d.MapErr(err))
			}
		}
		var err error
		certs, err = queryAll(ctx, o, tx, o.scanCert, `
			UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
			WHERE serial IN (`+sel+`) AND status = 'active'
			RETURNING `+o.d.CertColumns,
			arg, o.time(at), reason)
		if err != nil {
			return o.errorf("revoke many %s: %w", what, err)
		}
		slices.SortFunc(certs, func(a, b store.Certificate) int { return strings.Compare(a.Serial, b.Serial) })
		entries = make([]store.AuditEntry, 0, len(certs))
		for _, c := range certs {
			ce := e
			ce.Target = c.Serial
			out, err := tx.AppendAudit(ctx, ce)
			if err != nil {
				return err
			}
			entries = append(entries, out)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return certs, entries, nil
}
