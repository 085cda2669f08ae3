package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const issuerColumns = `id, kind, coalesce(parent_id, ''), key_uri, cert_der, subject_key_id,
	not_before, not_after, state, created_at, updated_at`

func scanIssuer(row pgx.Row) (store.Issuer, error) {
	var is store.Issuer
	var notBefore, notAfter, created, updated *time.Time
	err := row.Scan(&is.ID, &is.Kind, &is.ParentID, &is.KeyURI, &is.CertDER, &is.SubjectKeyID,
		&notBefore, &notAfter, &is.State, &created, &updated)
	if err != nil {
		return store.Issuer{}, err
	}
	is.NotBefore, is.NotAfter = fromTS(notBefore), fromTS(notAfter)
	is.CreatedAt, is.UpdatedAt = fromTS(created), fromTS(updated)
	return is, nil
}

// InsertIssuer adds an issuer; store.ErrConflict if its ID is taken,
// store.ErrNotFound if its parent does not exist.
func (s *Store) InsertIssuer(ctx context.Context, is store.Issuer) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO issuers (id, kind, parent_id, key_uri, cert_der, subject_key_id,
			not_before, not_after, state, created_at, updated_at)
		VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7, $8, $9, $10, $11)`,
		is.ID, is.Kind, is.ParentID, is.KeyURI, is.CertDER, is.SubjectKeyID,
		ts(is.NotBefore), ts(is.NotAfter), is.State, ts(is.CreatedAt), ts(is.UpdatedAt))
	if isForeignKeyViolation(err) {
		return fmt.Errorf("postgres: insert issuer %q: parent %q: %w", is.ID, is.ParentID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("postgres: insert issuer %q: %w", is.ID, mapErr(err))
	}
	return nil
}

// GetIssuer returns one issuer or store.ErrNotFound.
func (s *Store) GetIssuer(ctx context.Context, id string) (store.Issuer, error) {
	is, err := scanIssuer(s.pool.QueryRow(ctx, `SELECT `+issuerColumns+` FROM issuers WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Issuer{}, fmt.Errorf("postgres: issuer %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Issuer{}, fmt.Errorf("postgres: get issuer %q: %w", id, mapErr(err))
	}
	return is, nil
}

// ListIssuers returns all issuers, oldest first (index issuers_created_idx).
func (s *Store) ListIssuers(ctx context.Context) ([]store.Issuer, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+issuerColumns+` FROM issuers ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list issuers: %w", mapErr(err))
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Issuer, error) { return scanIssuer(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list issuers: %w", mapErr(err))
	}
	return list, nil
}

// SetIssuerState moves an issuer from one state to another as a conditional
// update; store.ErrNotFound if it does not exist, store.ErrConflict if it is
// not in from.
func (s *Store) SetIssuerState(ctx context.Context, id string, from, to store.IssuerState, at time.Time) error {
	tag, err := s.pool.Exec(ctx,
		`UPDATE issuers SET state = $3, updated_at = $4 WHERE id = $1 AND state = $2`,
		id, from, to, ts(at))
	if err != nil {
		return fmt.Errorf("postgres: set issuer %q state: %w", id, mapErr(err))
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	return s.issuerMissOrConflict(ctx, id, fmt.Sprintf("not in state %s", from))
}

// SetIssuerCertificate installs the certificate of an issuer created without
// one; store.ErrConflict if it already has one, store.ErrNotFound if there is
// no such issuer.
func (s *Store) SetIssuerCertificate(ctx context.Context, id string, der, subjectKeyID []byte, notBefore, notAfter time.Time, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE issuers SET cert_der = $2, subject_key_id = $3, not_before = $4, not_after = $5, updated_at = $6
		WHERE id = $1 AND cert_der IS NULL`,
		id, der, subjectKeyID, ts(notBefore), ts(notAfter), ts(at))
	if err != nil {
		return fmt.Errorf("postgres: set issuer %q certificate: %w", id, mapErr(err))
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	return s.issuerMissOrConflict(ctx, id, "already has a certificate")
}

// issuerMissOrConflict explains a conditional update that changed nothing.
func (s *Store) issuerMissOrConflict(ctx context.Context, id, why string) error {
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM issuers WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: issuer %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("postgres: issuer %q: %w", id, mapErr(err))
	}
	return fmt.Errorf("postgres: issuer %q %s: %w", id, why, store.ErrConflict)
}
