package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// NextCRLNumber returns the issuer's next CRL number. The upsert takes the
// row lock, so concurrent callers on any replica get distinct, increasing
// numbers; store.ErrNotFound if the issuer does not exist.
func (s *Store) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `
		INSERT INTO crl_numbers (issuer_id, last_number) VALUES ($1, 1)
		ON CONFLICT (issuer_id) DO UPDATE SET last_number = crl_numbers.last_number + 1
		RETURNING last_number`, issuerID).Scan(&n)
	if isForeignKeyViolation(err) {
		return 0, fmt.Errorf("postgres: CRL number: issuer %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: CRL number of %q: %w", issuerID, mapErr(err))
	}
	return n, nil
}

// RevokedEntries returns the issuer's revoked, unexpired leaves by serial,
// without their DER (index certificates_issuer_idx).
func (s *Store) RevokedEntries(ctx context.Context, issuerID string, now time.Time) ([]store.RevocationStatus, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT serial, issuer_id, not_after, revoked_at, coalesce(revocation_reason, '')
		FROM certificates
		WHERE issuer_id = $1 AND status = 'revoked' AND not_after > $2
		ORDER BY serial`, issuerID, ts(now))
	if err != nil {
		return nil, fmt.Errorf("postgres: revoked entries of %q: %w", issuerID, mapErr(err))
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.RevocationStatus, error) {
		var e store.RevocationStatus
		var notAfter, revokedAt *time.Time
		err := r.Scan(&e.Serial, &e.IssuerID, &notAfter, &revokedAt, &e.Reason)
		e.NotAfter, e.RevokedAt, e.Revoked = fromTS(notAfter), fromTS(revokedAt), true
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: revoked entries of %q: %w", issuerID, mapErr(err))
	}
	return list, nil
}

// RevocationSeq reads the issuer's revocation counter, which the
// certificates_revoked trigger moves (primary-key read).
func (s *Store) RevocationSeq(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT seq FROM revocation_counters WHERE issuer_id = $1`, issuerID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: revocation counter of %q: %w", issuerID, mapErr(err))
	}
	return n, nil
}

// PutCRL stores c unless a CRL with the same or a higher number is stored;
// the conditional upsert decides atomically.
func (s *Store) PutCRL(ctx context.Context, c store.CRL) error {
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO crls (issuer_id, number, this_update, next_update, revocation_seq, entries, der)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (issuer_id) DO UPDATE SET number = excluded.number,
			this_update = excluded.this_update, next_update = excluded.next_update,
			revocation_seq = excluded.revocation_seq, entries = excluded.entries, der = excluded.der
		WHERE crls.number < excluded.number`,
		c.IssuerID, c.Number, ts(c.ThisUpdate), ts(c.NextUpdate), c.RevocationSeq, c.Entries, c.DER)
	if isForeignKeyViolation(err) {
		return fmt.Errorf("postgres: put CRL: issuer %q: %w", c.IssuerID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("postgres: put CRL %d of %q: %w", c.Number, c.IssuerID, mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: put CRL %d of %q: a CRL with this or a higher number is stored: %w", c.Number, c.IssuerID, store.ErrConflict)
	}
	return nil
}

// GetCRL returns the issuer's latest CRL with its DER.
func (s *Store) GetCRL(ctx context.Context, issuerID string) (store.CRL, error) {
	return s.readCRL(ctx, issuerID, `der`)
}

// CRLInfo returns the issuer's latest CRL without its DER.
func (s *Store) CRLInfo(ctx context.Context, issuerID string) (store.CRL, error) {
	return s.readCRL(ctx, issuerID, `NULL::bytea`)
}

func (s *Store) readCRL(ctx context.Context, issuerID, derColumn string) (store.CRL, error) {
	c := store.CRL{IssuerID: issuerID}
	var thisUpdate, nextUpdate *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT number, this_update, next_update, revocation_seq, entries, `+derColumn+`
		FROM crls WHERE issuer_id = $1`, issuerID).
		Scan(&c.Number, &thisUpdate, &nextUpdate, &c.RevocationSeq, &c.Entries, &c.DER)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.CRL{}, fmt.Errorf("postgres: CRL of %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return store.CRL{}, fmt.Errorf("postgres: CRL of %q: %w", issuerID, mapErr(err))
	}
	c.ThisUpdate, c.NextUpdate = fromTS(thisUpdate), fromTS(nextUpdate)
	return c, nil
}
