package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RevokeMany revokes every active certificate the scope selects and appends
// one audit entry per revoked certificate in the same transaction; see
// store.Store. Only the SPIFFE ID scope is implemented here.
func (s *Store) RevokeMany(ctx context.Context, scope store.RevokeScope, at time.Time, reason string, e store.AuditEntry) ([]store.Certificate, []store.AuditEntry, error) {
	switch {
	case scope.Serial != "":
		return nil, nil, fmt.Errorf("postgres: revoke many: a serial scope is not supported: %w", store.ErrInvalidQuery)
	case scope.SPIFFEID == "":
		return nil, nil, fmt.Errorf("postgres: revoke many: empty scope: %w", store.ErrInvalidQuery)
	case at.IsZero():
		return nil, nil, fmt.Errorf("postgres: revoke many: no revocation time: %w", store.ErrInvalidQuery)
	}
	var certs []store.Certificate
	var entries []store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// The identity's rows are locked in serial order (the subquery's
		// FOR UPDATE), so two bulk revocations of one identity queue
		// instead of deadlocking; index certificates_identity_order_idx.
		rows, err := tx.Query(ctx, `
			UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
			WHERE serial IN (
				SELECT serial FROM certificates
				WHERE spiffe_id = $1 AND status = 'active' AND not_after > $2
				ORDER BY serial FOR UPDATE)
			RETURNING `+certColumns,
			scope.SPIFFEID, ts(at), reason)
		if err != nil {
			return fmt.Errorf("postgres: revoke identity %s: %w", scope.SPIFFEID, mapErr(err))
		}
		certs, err = collectCerts(rows)
		if err != nil {
			return fmt.Errorf("postgres: revoke identity %s: %w", scope.SPIFFEID, mapErr(err))
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
