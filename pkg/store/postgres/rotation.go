package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RotationLockKey is the pg_advisory_xact_lock key that serialises
// RecordRotation across replicas, so the check for a prepared issuer and
// the inserts see every earlier rotation committed.
const RotationLockKey int64 = 0x7763615f726f7461 // "wca_rota"

// RecordRotation inserts one rotation's issuers and its audit entry in one
// transaction; see store.IssuerRotation.
func (s *Store) RecordRotation(ctx context.Context, issuers []store.Issuer, e store.AuditEntry) (store.AuditEntry, error) {
	if err := checkRotation(issuers); err != nil {
		return store.AuditEntry{}, err
	}
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, RotationLockKey); err != nil {
			return fmt.Errorf("postgres: lock rotation: %w", mapErr(err))
		}
		// A sequential scan: the issuers table holds a handful of rows.
		var prepared string
		err := tx.QueryRow(ctx, `SELECT id FROM issuers WHERE state = 'prepared' ORDER BY id LIMIT 1`).Scan(&prepared)
		switch {
		case err == nil:
			return fmt.Errorf("postgres: record rotation: issuer %q is prepared: %w", prepared, store.ErrConflict)
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("postgres: record rotation: %w", mapErr(err))
		}
		for _, is := range issuers {
			_, err := tx.Exec(ctx, `
				INSERT INTO issuers (id, kind, parent_id, key_uri, cert_der, subject_key_id,
					not_before, not_after, state, created_at, updated_at)
				VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7, $8, $9, $10, $11)`,
				is.ID, is.Kind, is.ParentID, is.KeyURI, is.CertDER, is.SubjectKeyID,
				ts(is.NotBefore), ts(is.NotAfter), is.State, ts(is.CreatedAt), ts(is.UpdatedAt))
			if isForeignKeyViolation(err) {
				return fmt.Errorf("postgres: record rotation: issuer %q: parent %q: %w", is.ID, is.ParentID, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("postgres: record rotation: issuer %q: %w", is.ID, mapErr(err))
			}
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// AbandonIssuers retires prepared issuers with their audit entry in one
// transaction; see store.IssuerRotation.
func (s *Store) AbandonIssuers(ctx context.Context, ids []string, at time.Time, e store.AuditEntry) (store.AuditEntry, error) {
	if len(ids) == 0 {
		return store.AuditEntry{}, fmt.Errorf("postgres: abandon: no issuer named: %w", store.ErrInvalidQuery)
	}
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, RotationLockKey); err != nil {
			return fmt.Errorf("postgres: lock rotation: %w", mapErr(err))
		}
		for _, id := range ids {
			// Primary key lookup.
			var state store.IssuerState
			err := tx.QueryRow(ctx, `SELECT state FROM issuers WHERE id = $1 FOR UPDATE`, id).Scan(&state)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("postgres: abandon issuer %q: %w", id, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("postgres: abandon issuer %q: %w", id, mapErr(err))
			}
			if state != store.IssuerPrepared {
				return fmt.Errorf("postgres: abandon issuer %q: it is %s, not prepared: %w", id, state, store.ErrConflict)
			}
			if _, err := tx.Exec(ctx, `UPDATE issuers SET state = 'retired', updated_at = $2 WHERE id = $1 AND state = 'prepared'`,
				id, ts(at)); err != nil {
				return fmt.Errorf("postgres: abandon issuer %q: %w", id, mapErr(err))
			}
		}
		var err error
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// checkRotation refuses an empty rotation or one with a non-prepared issuer.
func checkRotation(issuers []store.Issuer) error {
	if len(issuers) == 0 {
		return fmt.Errorf("postgres: record rotation: no issuers: %w", store.ErrInvalidQuery)
	}
	for _, is := range issuers {
		if is.State != store.IssuerPrepared {
			return fmt.Errorf("postgres: record rotation: issuer %q is %s, not prepared: %w", is.ID, is.State, store.ErrInvalidQuery)
		}
	}
	return nil
}
