package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// recordRenewal records a renewal in its own transaction: the conditional
// update that marks the predecessor superseded (only if no renewal did
// before: READ COMMITTED re-checks superseded_by IS NULL after waiting for a
// concurrent renewal's row lock, so exactly one of them wins, on any
// replica), the row with the lineage fields copied from the predecessor,
// and the audit entry. store.ErrSuperseded if the predecessor was already
// renewed, store.ErrNotFound if it does not exist, store.ErrConflict if the
// new serial is taken.
func (s *Store) recordRenewal(ctx context.Context, c store.Certificate, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var started *time.Time
		err := tx.QueryRow(ctx, `
			UPDATE certificates SET superseded_by = $2
			WHERE serial = $1 AND superseded_by IS NULL
			RETURNING lineage, repository, token_issuer, subject, lineage_started_at`,
			c.RenewedFrom, c.Serial).Scan(&c.Lineage, &c.Repository, &c.TokenIssuer, &c.Subject, &started)
		if errors.Is(err, pgx.ErrNoRows) {
			var by string
			err = tx.QueryRow(ctx, `SELECT coalesce(superseded_by, '') FROM certificates WHERE serial = $1`, c.RenewedFrom).Scan(&by)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("postgres: record renewal %s: predecessor %s: %w", c.Serial, c.RenewedFrom, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("postgres: record renewal %s: %w", c.Serial, mapErr(err))
			}
			return fmt.Errorf("postgres: record renewal %s: %s was already renewed as %s: %w", c.Serial, c.RenewedFrom, by, store.ErrSuperseded)
		}
		if err != nil {
			return fmt.Errorf("postgres: record renewal %s: %w", c.Serial, mapErr(err))
		}
		c.LineageStartedAt = fromTS(started)
		if c.Lineage == "" { // a predecessor recorded before lineages: it starts one
			c.Lineage, c.LineageStartedAt = c.RenewedFrom, c.CreatedAt
		}
		_, err = tx.Exec(ctx, insertCertificateSQL, certArgs(c)...)
		if isForeignKeyViolation(err) {
			return fmt.Errorf("postgres: record renewal %s: issuer %q: %w", c.Serial, c.IssuerID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: record renewal %s: %w", c.Serial, mapErr(err))
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// RevokeMany revokes the active certificates of scope and appends one audit
// entry each, in one transaction; see store.Store. The descendants are
// walked over renewed_from (certificates_renewed_from_idx, migration
// 000007).
func (s *Store) RevokeMany(ctx context.Context, scope store.RevokeScope, at time.Time, reason string, e store.AuditEntry) ([]store.Certificate, []store.AuditEntry, error) {
	switch {
	case scope.SPIFFEID != "":
		return nil, nil, fmt.Errorf("postgres: revoke many: identity scope: %w", store.ErrInvalidQuery)
	case scope.Serial == "":
		return nil, nil, fmt.Errorf("postgres: revoke many: no serial: %w", store.ErrInvalidQuery)
	}
	var certs []store.Certificate
	var entries []store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM certificates WHERE serial = $1`, scope.Serial).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: revoke many %s: %w", scope.Serial, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: revoke many %s: %w", scope.Serial, mapErr(err))
		}
		sel := `SELECT $1::text COLLATE "C"`
		if scope.Descendants {
			sel = `WITH RECURSIVE d (serial) AS (
				SELECT $1::text COLLATE "C"
				UNION
				SELECT c.serial FROM certificates c JOIN d ON c.renewed_from = d.serial
			) SELECT serial FROM d`
		}
		rows, err := tx.Query(ctx, `
			UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3
			WHERE serial IN (`+sel+`) AND status = 'active'
			RETURNING `+certColumns,
			scope.Serial, ts(at), reason)
		if err != nil {
			return fmt.Errorf("postgres: revoke many %s: %w", scope.Serial, mapErr(err))
		}
		certs, err = collectCerts(rows)
		if err != nil {
			return fmt.Errorf("postgres: revoke many %s: %w", scope.Serial, mapErr(err))
		}
		sort.Slice(certs, func(i, j int) bool { return certs[i].Serial < certs[j].Serial })
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
