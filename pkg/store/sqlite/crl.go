package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// NextCRLNumber returns the issuer's next CRL number, starting at 1; writes
// are serialised, so concurrent callers get distinct, increasing numbers.
// store.ErrNotFound if the issuer does not exist.
func (s *Store) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := s.w.QueryRowContext(ctx, `
		INSERT INTO crl_numbers (issuer_id, last_number) VALUES (?, 1)
		ON CONFLICT (issuer_id) DO UPDATE SET last_number = last_number + 1
		RETURNING last_number`, issuerID).Scan(&n)
	if isForeignKeyViolation(err) {
		return 0, fmt.Errorf("sqlite: CRL number: issuer %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: CRL number of %q: %w", issuerID, mapErr(err))
	}
	return n, nil
}

// RevokedEntries returns the issuer's revoked, unexpired leaves by serial,
// without their DER (index certificates_issuer_idx).
func (s *Store) RevokedEntries(ctx context.Context, issuerID string, now time.Time) ([]store.RevocationStatus, error) {
	list, err := queryStatuses(ctx, s.r, `
		SELECT serial, issuer_id, not_after, 1, revoked_at, coalesce(revocation_reason, '')
		FROM certificates
		WHERE issuer_id = ? AND status = 'revoked' AND not_after > ?
		ORDER BY serial`, issuerID, us(now))
	if err != nil {
		return nil, fmt.Errorf("sqlite: revoked entries of %q: %w", issuerID, err)
	}
	return list, nil
}

// RevocationSeq reads the issuer's revocation counter, which the
// certificates_revoked trigger moves.
func (s *Store) RevocationSeq(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx, `SELECT seq FROM revocation_counters WHERE issuer_id = ?`, issuerID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: revocation counter of %q: %w", issuerID, mapErr(err))
	}
	return n, nil
}

// PutCRL stores c unless a CRL with the same or a higher number is stored.
func (s *Store) PutCRL(ctx context.Context, c store.CRL) error {
	res, err := s.w.ExecContext(ctx, `
		INSERT INTO crls (issuer_id, number, this_update, next_update, revocation_seq, entries, der)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (issuer_id) DO UPDATE SET number = excluded.number,
			this_update = excluded.this_update, next_update = excluded.next_update,
			revocation_seq = excluded.revocation_seq, entries = excluded.entries, der = excluded.der
		WHERE crls.number < excluded.number`,
		c.IssuerID, c.Number, us(c.ThisUpdate), us(c.NextUpdate), c.RevocationSeq, c.Entries, c.DER)
	if isForeignKeyViolation(err) {
		return fmt.Errorf("sqlite: put CRL: issuer %q: %w", c.IssuerID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sqlite: put CRL %d of %q: %w", c.Number, c.IssuerID, mapErr(err))
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("sqlite: put CRL %d of %q: a CRL with this or a higher number is stored: %w", c.Number, c.IssuerID, store.ErrConflict)
	}
	return nil
}

// GetCRL returns the issuer's latest CRL with its DER.
func (s *Store) GetCRL(ctx context.Context, issuerID string) (store.CRL, error) {
	return s.readCRL(ctx, issuerID, `der`)
}

// CRLInfo returns the issuer's latest CRL without its DER.
func (s *Store) CRLInfo(ctx context.Context, issuerID string) (store.CRL, error) {
	return s.readCRL(ctx, issuerID, `NULL`)
}

func (s *Store) readCRL(ctx context.Context, issuerID, derColumn string) (store.CRL, error) {
	c := store.CRL{IssuerID: issuerID}
	var thisUpdate, nextUpdate sql.NullInt64
	err := s.r.QueryRowContext(ctx, `
		SELECT number, this_update, next_update, revocation_seq, entries, `+derColumn+`
		FROM crls WHERE issuer_id = ?`, issuerID).
		Scan(&c.Number, &thisUpdate, &nextUpdate, &c.RevocationSeq, &c.Entries, &c.DER)
	if errors.Is(err, sql.ErrNoRows) {
		return store.CRL{}, fmt.Errorf("sqlite: CRL of %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return store.CRL{}, fmt.Errorf("sqlite: CRL of %q: %w", issuerID, mapErr(err))
	}
	c.ThisUpdate, c.NextUpdate = fromUS(thisUpdate), fromUS(nextUpdate)
	return c, nil
}
