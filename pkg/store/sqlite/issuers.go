package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const issuerColumns = `id, kind, coalesce(parent_id, ''), key_uri, cert_der, subject_key_id,
	not_before, not_after, state, created_at, updated_at`

func scanIssuer(row scanner) (store.Issuer, error) {
	var is store.Issuer
	var notBefore, notAfter, created, updated sql.NullInt64
	err := row.Scan(&is.ID, &is.Kind, &is.ParentID, &is.KeyURI, &is.CertDER, &is.SubjectKeyID,
		&notBefore, &notAfter, &is.State, &created, &updated)
	if err != nil {
		return store.Issuer{}, err
	}
	is.NotBefore, is.NotAfter = fromUS(notBefore), fromUS(notAfter)
	is.CreatedAt, is.UpdatedAt = fromUS(created), fromUS(updated)
	return is, nil
}

// InsertIssuer adds an issuer; store.ErrConflict if its ID is taken,
// store.ErrNotFound if its parent does not exist.
func (s *Store) InsertIssuer(ctx context.Context, is store.Issuer) error {
	_, err := s.w.ExecContext(ctx, `
		INSERT INTO issuers (id, kind, parent_id, key_uri, cert_der, subject_key_id,
			not_before, not_after, state, created_at, updated_at)
		VALUES (?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?, ?, ?, ?)`,
		is.ID, is.Kind, is.ParentID, is.KeyURI, is.CertDER, is.SubjectKeyID,
		us(is.NotBefore), us(is.NotAfter), is.State, us(is.CreatedAt), us(is.UpdatedAt))
	if isForeignKeyViolation(err) {
		return fmt.Errorf("sqlite: insert issuer %q: parent %q: %w", is.ID, is.ParentID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: insert issuer %q: %w", is.ID, mapErr(err))
	}
	return nil
}

// GetIssuer returns one issuer or store.ErrNotFound.
func (s *Store) GetIssuer(ctx context.Context, id string) (store.Issuer, error) {
	is, err := scanIssuer(s.r.QueryRowContext(ctx, `SELECT `+issuerColumns+` FROM issuers WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Issuer{}, fmt.Errorf("sqlite: issuer %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Issuer{}, fmt.Errorf("sqlite: get issuer %q: %w", id, mapErr(err))
	}
	return is, nil
}

// ListIssuers returns all issuers, oldest first (index issuers_created_idx).
func (s *Store) ListIssuers(ctx context.Context) ([]store.Issuer, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+issuerColumns+` FROM issuers ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list issuers: %w", mapErr(err))
	}
	list, err := collectRows(rows, scanIssuer)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list issuers: %w", mapErr(err))
	}
	return list, nil
}

// SetIssuerState moves an issuer from one state to another as a conditional
// update; store.ErrNotFound if it does not exist, store.ErrConflict if it is
// not in from.
func (s *Store) SetIssuerState(ctx context.Context, id string, from, to store.IssuerState, at time.Time) error {
	res, err := s.w.ExecContext(ctx,
		`UPDATE issuers SET state = ?, updated_at = ? WHERE id = ? AND state = ?`,
		to, us(at), id, from)
	if err != nil {
		return fmt.Errorf("sqlite: set issuer %q state: %w", id, mapErr(err))
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	return s.issuerMissOrConflict(ctx, id, fmt.Sprintf("not in state %s", from))
}

// SetIssuerCertificate installs the certificate of an issuer created without
// one; store.ErrConflict if it already has one, store.ErrNotFound if there is
// no such issuer.
func (s *Store) SetIssuerCertificate(ctx context.Context, id string, der, subjectKeyID []byte, notBefore, notAfter time.Time, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `
		UPDATE issuers SET cert_der = ?, subject_key_id = ?, not_before = ?, not_after = ?, updated_at = ?
		WHERE id = ? AND cert_der IS NULL`,
		der, subjectKeyID, us(notBefore), us(notAfter), us(at), id)
	if err != nil {
		return fmt.Errorf("sqlite: set issuer %q certificate: %w", id, mapErr(err))
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	return s.issuerMissOrConflict(ctx, id, "already has a certificate")
}

// issuerMissOrConflict explains a conditional update that changed nothing.
func (s *Store) issuerMissOrConflict(ctx context.Context, id, why string) error {
	var one int
	err := s.w.QueryRowContext(ctx, `SELECT 1 FROM issuers WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: issuer %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: issuer %q: %w", id, mapErr(err))
	}
	return fmt.Errorf("sqlite: issuer %q %s: %w", id, why, store.ErrConflict)
}
