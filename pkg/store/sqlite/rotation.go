package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RecordRotation inserts one rotation's issuers and its audit entry in one
// write transaction (BEGIN IMMEDIATE serialises it with every other
// writer); see store.IssuerRotation.
func (s *Store) RecordRotation(ctx context.Context, issuers []store.Issuer, e store.AuditEntry) (store.AuditEntry, error) {
	if len(issuers) == 0 {
		return store.AuditEntry{}, fmt.Errorf("sqlite: record rotation: no issuers: %w", store.ErrInvalidQuery)
	}
	for _, is := range issuers {
		if is.State != store.IssuerPrepared {
			return store.AuditEntry{}, fmt.Errorf("sqlite: record rotation: issuer %q is %s, not prepared: %w", is.ID, is.State, store.ErrInvalidQuery)
		}
	}
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// A full scan: the issuers table holds a handful of rows.
		var prepared string
		err := tx.QueryRowContext(ctx, `SELECT id FROM issuers WHERE state = 'prepared' ORDER BY id LIMIT 1`).Scan(&prepared)
		switch {
		case err == nil:
			return fmt.Errorf("sqlite: record rotation: issuer %q is prepared: %w", prepared, store.ErrConflict)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: record rotation: %w", mapErr(err))
		}
		for _, is := range issuers {
			_, err := tx.ExecContext(ctx, `
				INSERT INTO issuers (id, kind, parent_id, key_uri, cert_der, subject_key_id,
					not_before, not_after, state, created_at, updated_at)
				VALUES (?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?, ?, ?, ?)`,
				is.ID, is.Kind, is.ParentID, is.KeyURI, is.CertDER, is.SubjectKeyID,
				us(is.NotBefore), us(is.NotAfter), is.State, us(is.CreatedAt), us(is.UpdatedAt))
			if isForeignKeyViolation(err) {
				return fmt.Errorf("sqlite: record rotation: issuer %q: parent %q: %w", is.ID, is.ParentID, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("sqlite: record rotation: issuer %q: %w", is.ID, mapErr(err))
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
// write transaction; see store.IssuerRotation.
func (s *Store) AbandonIssuers(ctx context.Context, ids []string, at time.Time, e store.AuditEntry) (store.AuditEntry, error) {
	if len(ids) == 0 {
		return store.AuditEntry{}, fmt.Errorf("sqlite: abandon: no issuer named: %w", store.ErrInvalidQuery)
	}
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			// Primary key lookup.
			var state store.IssuerState
			err := tx.QueryRowContext(ctx, `SELECT state FROM issuers WHERE id = ?`, id).Scan(&state)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("sqlite: abandon issuer %q: %w", id, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("sqlite: abandon issuer %q: %w", id, mapErr(err))
			}
			if state != store.IssuerPrepared {
				return fmt.Errorf("sqlite: abandon issuer %q: it is %s, not prepared: %w", id, state, store.ErrConflict)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE issuers SET state = 'retired', updated_at = ? WHERE id = ? AND state = 'prepared'`,
				us(at), id); err != nil {
				return fmt.Errorf("sqlite: abandon issuer %q: %w", id, mapErr(err))
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
