package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const issuerColumns = `id, kind, coalesce(parent_id, ''), key_uri, cert_der, subject_key_id,
	not_before, not_after, state, created_at, updated_at`

func scanIssuer(row Row) (store.Issuer, error) {
	var is store.Issuer
	var notBefore, notAfter, created, updated NullTime
	err := row.Scan(&is.ID, &is.Kind, &is.ParentID, &is.KeyURI, &is.CertDER, &is.SubjectKeyID,
		&notBefore, &notAfter, &is.State, &created, &updated)
	if err != nil {
		return store.Issuer{}, err
	}
	is.NotBefore, is.NotAfter = notBefore.Time, notAfter.Time
	is.CreatedAt, is.UpdatedAt = created.Time, updated.Time
	return is, nil
}

// insertIssuer inserts is on q (the pool or a rotation's transaction); a
// missing parent is store.ErrNotFound, a taken ID store.ErrConflict. what
// starts the error message.
func (o *Ops) insertIssuer(ctx context.Context, q Querier, is store.Issuer, what string) error {
	_, err := q.Exec(ctx, `
		INSERT INTO issuers (id, kind, parent_id, key_uri, cert_der, subject_key_id,
			not_before, not_after, state, created_at, updated_at)
		VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7, $8, $9, $10, $11)`,
		is.ID, is.Kind, is.ParentID, is.KeyURI, is.CertDER, is.SubjectKeyID,
		o.time(is.NotBefore), o.time(is.NotAfter), is.State, o.time(is.CreatedAt), o.time(is.UpdatedAt))
	if o.d.IsForeignKeyViolation(err) {
		return o.errorf("%s %q: parent %q: %w", what, is.ID, is.ParentID, store.ErrNotFound)
	}
	if err != nil {
		return o.errorf("%s %q: %w", what, is.ID, o.d.MapErr(err))
	}
	return nil
}

// InsertIssuer adds an issuer; store.ErrConflict if its ID is taken,
// store.ErrNotFound if its parent does not exist.
func (o *Ops) InsertIssuer(ctx context.Context, is store.Issuer) error {
	return o.insertIssuer(ctx, o.w, is, "insert issuer")
}

// GetIssuer returns one issuer or store.ErrNotFound.
func (o *Ops) GetIssuer(ctx context.Context, id string) (store.Issuer, error) {
	is, err := scanIssuer(o.r.QueryRow(ctx, `SELECT `+issuerColumns+` FROM issuers WHERE id = $1`, id))
	if o.d.IsNoRows(err) {
		return store.Issuer{}, o.errorf("issuer %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Issuer{}, o.errorf("get issuer %q: %w", id, o.d.MapErr(err))
	}
	return is, nil
}

// ListIssuers returns all issuers, oldest first (index issuers_created_idx).
func (o *Ops) ListIssuers(ctx context.Context) ([]store.Issuer, error) {
	list, err := queryAll(ctx, o, o.r, scanIssuer, `SELECT `+issuerColumns+` FROM issuers ORDER BY created_at, id`)
	if err != nil {
		return nil, o.errorf("list issuers: %w", err)
	}
	return list, nil
}

// SetIssuerState moves an issuer from one state to another as a conditional
// update; store.ErrNotFound if it does not exist, store.ErrConflict if it is
// not in from.
func (o *Ops) SetIssuerState(ctx context.Context, id string, from, to store.IssuerState, at time.Time) error {
	n, err := o.w.Exec(ctx,
		`UPDATE issuers SET state = $3, updated_at = $4 WHERE id = $1 AND state = $2`,
		id, from, to, o.time(at))
	if err != nil {
		return o.errorf("set issuer %q state: %w", id, o.d.MapErr(err))
	}
	if n == 1 {
		return nil
	}
	return o.issuerMissOrConflict(ctx, id, fmt.Sprintf("not in state %s", from))
}

// SetIssuerCertificate installs the certificate of an issuer created without
// one; store.ErrConflict if it already has one, store.ErrNotFound if there is
// no such issuer.
func (o *Ops) SetIssuerCertificate(ctx context.Context, id string, der, subjectKeyID []byte, notBefore, notAfter time.Time, at time.Time) error {
	n, err := o.w.Exec(ctx, `
		UPDATE issuers SET cert_der = $2, subject_key_id = $3, not_before = $4, not_after = $5, updated_at = $6
		WHERE id = $1 AND cert_der IS NULL`,
		id, der, subjectKeyID, o.time(notBefore), o.time(notAfter), o.time(at))
	if err != nil {
		return o.errorf("set issuer %q certificate: %w", id, o.d.MapErr(err))
	}
	if n == 1 {
		return nil
	}
	return o.issuerMissOrConflict(ctx, id, "already has a certificate")
}

// issuerMissOrConflict explains a conditional update that changed nothing
// (reading where it wrote, so it sees the update's outcome).
func (o *Ops) issuerMissOrConflict(ctx context.Context, id, why string) error {
	var one int
	err := o.w.QueryRow(ctx, `SELECT 1 FROM issuers WHERE id = $1`, id).Scan(&one)
	if o.d.IsNoRows(err) {
		return o.errorf("issuer %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return o.errorf("issuer %q: %w", id, o.d.MapErr(err))
	}
	return o.errorf("issuer %q %s: %w", id, why, store.ErrConflict)
}
