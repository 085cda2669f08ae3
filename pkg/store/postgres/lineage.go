package postgres

import (
	"context"
	"errors"
	"fmt"
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
