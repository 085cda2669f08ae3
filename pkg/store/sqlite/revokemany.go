package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RevokeMany revokes every active certificate the scope selects and appends
// one audit entry per revoked certificate in the same transaction; see
// store.Store.
func (s *Store) RevokeMany(ctx context.Context, scope store.RevokeScope, at time.Time, reason string, e store.AuditEntry) ([]store.Certificate, []store.AuditEntry, error) {
	if err := scope.Check(at); err != nil {
		return nil, nil, fmt.Errorf("sqlite: %w", err)
	}
	what := scope.Serial
	var where string
	var args []any
	switch {
	case scope.SPIFFEID != "":
		// Index certificates_identity_order_idx (spiffe_id first).
		what = scope.SPIFFEID
		where = `spiffe_id = ? AND status = 'active' AND not_after > ?`
		args = []any{scope.SPIFFEID, us(at)}
	case scope.Descendants:
		// The descendants are walked over renewed_from
		// (certificates_renewed_from_idx, migration 000007).
		where = `serial IN (WITH RECURSIVE d (serial) AS (
				SELECT ?
				UNION
				SELECT c.serial FROM certificates c JOIN d ON c.renewed_from = d.serial
			) SELECT serial FROM d) AND status = 'active'`
		args = []any{scope.Serial}
	default:
		where = `serial = ? AND status = 'active'`
		args = []any{scope.Serial}
	}
	var certs []store.Certificate
	var entries []store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if scope.Serial != "" {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM certificates WHERE serial = ?`, scope.Serial).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("sqlite: revoke many %s: %w", scope.Serial, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("sqlite: revoke many %s: %w", scope.Serial, mapErr(err))
			}
		}
		var err error
		certs, err = queryCerts(ctx, tx, `
			UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
			WHERE `+where+`
			RETURNING `+certColumns,
			append([]any{us(at), reason}, args...)...)
		if err != nil {
			return fmt.Errorf("sqlite: revoke many %s: %w", what, err)
		}
		slices.SortFunc(certs, func(a, b store.Certificate) int { return strings.Compare(a.Serial, b.Serial) })
		entries = make([]store.AuditEntry, 0, len(certs))
		for _, c := range certs {
			ce := e
			ce.Target = c.Serial
			out, err := appendAudit(ctx, tx, ce)
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
