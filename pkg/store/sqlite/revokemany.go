package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RevokeMany revokes every active certificate the scope selects and appends
// one audit entry per revoked certificate in the same transaction; see
// store.Store. Only the SPIFFE ID scope is implemented here.
func (s *Store) RevokeMany(ctx context.Context, scope store.RevokeScope, at time.Time, reason string, e store.AuditEntry) ([]store.Certificate, []store.AuditEntry, error) {
	switch {
	case scope.Serial != "":
		return nil, nil, fmt.Errorf("sqlite: revoke many: a serial scope is not supported: %w", store.ErrInvalidQuery)
	case scope.SPIFFEID == "":
		return nil, nil, fmt.Errorf("sqlite: revoke many: empty scope: %w", store.ErrInvalidQuery)
	case at.IsZero():
		return nil, nil, fmt.Errorf("sqlite: revoke many: no revocation time: %w", store.ErrInvalidQuery)
	}
	var certs []store.Certificate
	var entries []store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// Index certificates_identity_order_idx (spiffe_id first).
		var err error
		certs, err = queryCerts(ctx, tx, `
			UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
			WHERE spiffe_id = ? AND status = 'active' AND not_after > ?
			RETURNING `+certColumns,
			us(at), reason, scope.SPIFFEID, us(at))
		if err != nil {
			return fmt.Errorf("sqlite: revoke identity %s: %w", scope.SPIFFEID, err)
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
