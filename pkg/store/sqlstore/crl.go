package sqlstore

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// NextCRLNumber returns the issuer's next CRL number, starting at 1. The
// upsert takes the row lock (SQLite: the one writer), so concurrent callers
// on any replica get distinct, increasing numbers; store.ErrNotFound if the
// issuer does not exist.
func (o *Ops) NextCRLNumber(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := o.w.QueryRow(ctx, `
		INSERT INTO crl_numbers (issuer_id, last_number) VALUES ($1, 1)
		ON CONFLICT (issuer_id) DO UPDATE SET last_number = crl_numbers.last_number + 1
		RETURNING last_number`, issuerID).Scan(&n)
	if o.d.IsForeignKeyViolation(err) {
		return 0, o.errorf("CRL number: issuer %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return 0, o.errorf("CRL number of %q: %w", issuerID, o.d.MapErr(err))
	}
	return n, nil
}

// RevokedEntries returns the issuer's revoked, unexpired leaves by serial,
// without their DER (index certificates_issuer_idx).
func (o *Ops) RevokedEntries(ctx context.Context, issuerID string, now time.Time) ([]store.RevocationStatus, error) {
	list, err := queryAll(ctx, o, o.r, func(row Row) (store.RevocationStatus, error) {
		var e store.RevocationStatus
		var notAfter, revokedAt NullTime
		if err := row.Scan(&e.Serial, &e.IssuerID, &notAfter, &revokedAt, &e.Reason); err != nil {
			return store.RevocationStatus{}, err
		}
		e.NotAfter, e.RevokedAt, e.Revoked = notAfter.Time, revokedAt.Time, true
		return e, nil
	}, `
		SELECT serial, issuer_id, not_after, revoked_at, coalesce(revocation_reason, '')
		FROM certificates
		WHERE issuer_id = $1 AND status = 'revoked' AND not_after > $2
		ORDER BY serial`, issuerID, o.time(now))
	if err != nil {
		return nil, o.errorf("revoked entries of %q: %w", issuerID, err)
	}
	return list, nil
}

// RevocationSeq reads the issuer's revocation counter, which the
// certificates_revoked trigger moves (primary-key read); 0 before the first
// revocation.
func (o *Ops) RevocationSeq(ctx context.Context, issuerID string) (int64, error) {
	var n int64
	err := o.r.QueryRow(ctx, `SELECT seq FROM revocation_counters WHERE issuer_id = $1`, issuerID).Scan(&n)
	if o.d.IsNoRows(err) {
		return 0, nil
	}
	if err != nil {
		return 0, o.errorf("revocation counter of %q: %w", issuerID, o.d.MapErr(err))
	}
	return n, nil
}

// PutCRL stores c unless a CRL with the same or a higher number is stored;
// the conditional upsert decides atomically.
func (o *Ops) PutCRL(ctx context.Context, c store.CRL) error {
	n, err := o.w.Exec(ctx, `
		INSERT INTO crls (issuer_id, number, this_update, next_update, revocation_seq, entries, der)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (issuer_id) DO UPDATE SET number = excluded.number,
			this_update = excluded.this_update, next_update = excluded.next_update,
			revocation_seq = excluded.revocation_seq, entries = excluded.entries, der = excluded.der
		WHERE crls.number < excluded.number`,
		c.IssuerID, c.Number, o.time(c.ThisUpdate), o.time(c.NextUpdate), c.RevocationSeq, c.Entries, c.DER)
	if o.d.IsForeignKeyViolation(err) {
		return o.errorf("put CRL: issuer %q: %w", c.IssuerID, store.ErrNotFound)
	}
	if err != nil {
		return o.errorf("put CRL %d of %q: %w", c.Number, c.IssuerID, o.d.MapErr(err))
	}
	if n == 0 {
		return o.errorf("put CRL %d of %q: a CRL with this or a higher number is stored: %w", c.Number, c.IssuerID, store.ErrConflict)
	}
	return nil
}

// GetCRL returns the issuer's latest CRL with its DER.
func (o *Ops) GetCRL(ctx context.Context, issuerID string) (store.CRL, error) {
	return o.readCRL(ctx, issuerID, true)
}

// CRLInfo returns the issuer's latest CRL without its DER.
func (o *Ops) CRLInfo(ctx context.Context, issuerID string) (store.CRL, error) {
	return o.readCRL(ctx, issuerID, false)
}

// readCRL reads the issuer's row of crls (primary key), with the DER if der.
func (o *Ops) readCRL(ctx context.Context, issuerID string, der bool) (store.CRL, error) {
	c := store.CRL{IssuerID: issuerID}
	derColumn := `NULL`
	if der {
		derColumn = `der`
	}
	var thisUpdate, nextUpdate NullTime
	err := o.r.QueryRow(ctx, `
		SELECT number, this_update, next_update, revocation_seq, entries, `+derColumn+`
		FROM crls WHERE issuer_id = $1`, issuerID).
		Scan(&c.Number, &thisUpdate, &nextUpdate, &c.RevocationSeq, &c.Entries, &c.DER)
	if o.d.IsNoRows(err) {
		return store.CRL{}, o.errorf("CRL of %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return store.CRL{}, o.errorf("CRL of %q: %w", issuerID, o.d.MapErr(err))
	}
	c.ThisUpdate, c.NextUpdate = thisUpdate.Time, nextUpdate.Time
	return c, nil
}
