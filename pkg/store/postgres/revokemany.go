package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RevokeMany revokes every active certificate the scope selects and appends
// one audit entry per revoked certificate in the same transaction; see
// store.Store.
func (s *Store) RevokeMany(ctx context.Context, scope store.RevokeScope, at time.Time, reason string, e store.AuditEntry) ([]store.Certificate, []store.AuditEntry, error) {
	if err := scope.Check(at); err != nil {
		return nil, nil, fmt.Errorf("postgres: %w", err)
	}
	what, arg := scope.Serial, scope.Serial
	// The selected rows are locked in serial order (the subquery's FOR
	// UPDATE), so two bulk revocations that overlap queue instead of
	// deadlocking.
	var sel string
	switch {
	case scope.SPIFFEID != "":
		// Index certificates_identity_order_idx (spiffe_id first).
		what, arg = scope.SPIFFEID, scope.SPIFFEID
		sel = `SELECT serial FROM certificates
			WHERE spiffe_id = $1 AND status = 'active' AND not_after > $2
			ORDER BY serial FOR UPDATE`
	case scope.Descendants:
		// The descendants are walked over renewed_from
		// (certificates_renewed_from_idx, migration 000007).
		sel = `WITH RECURSIVE d (serial) AS (
				SELECT $1::text COLLATE "C"
				UNION
				SELECT c.serial FROM certificates c JOIN d ON c.renewed_from = d.serial
			) SELECT c.serial FROM certificates c JOIN d ON c.serial = d.serial
			WHERE c.status = 'active' ORDER BY c.serial FOR UPDATE OF c`
	default:
		sel = `SELECT serial FROM certificates WHERE serial = $1 AND status = 'active' FOR UPDATE`
	}
	var certs []store.Certificate
	var entries []store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if scope.Serial != "" {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM certificates WHERE serial = $1`, scope.Serial).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("postgres: revoke many %s: %w", scope.Serial, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("postgres: revoke many %s: %w", scope.Serial, mapErr(err))
			}
		}
		rows, err := tx.Query(ctx, `
			UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
			WHERE serial IN (`+sel+`) AND status = 'active'
			RETURNING `+certColumns,
			arg, ts(at), reason)
		if err != nil {
			return fmt.Errorf("postgres: revoke many %s: %w", what, mapErr(err))
		}
		certs, err = collectCerts(rows)
		if err != nil {
			return fmt.Errorf("postgres: revoke many %s: %w", what, mapErr(err))
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
