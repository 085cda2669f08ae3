package sqlstore

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// statusColumns is the select list of a certificates row c that scanStatus
// reads.
const statusColumns = `c.serial, c.issuer_id, c.not_after, c.status = 'revoked', c.revoked_at,
	coalesce(c.revocation_reason, '')`

func scanStatus(row Row) (store.RevocationStatus, error) {
	var e store.RevocationStatus
	var notAfter, revokedAt NullTime
	if err := row.Scan(&e.Serial, &e.IssuerID, &notAfter, &e.Revoked, &revokedAt, &e.Reason); err != nil {
		return store.RevocationStatus{}, err
	}
	e.NotAfter, e.RevokedAt = notAfter.Time, revokedAt.Time
	return e, nil
}

// CertificateStatus returns one certificate's revocation state (primary
// key), or store.ErrNotFound.
func (o *Ops) CertificateStatus(ctx context.Context, serial string) (store.RevocationStatus, error) {
	e, err := scanStatus(o.r.QueryRow(ctx, `SELECT `+statusColumns+` FROM certificates c WHERE c.serial = $1`, serial))
	if o.d.IsNoRows(err) {
		return store.RevocationStatus{}, o.errorf("status of %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.RevocationStatus{}, o.errorf("status of %s: %w", serial, o.d.MapErr(err))
	}
	return e, nil
}

// OCSPWork returns leaves whose response is missing, due or contradicts the
// certificate's status. It walks the issuer's unexpired leaves
// (certificates_issuer_idx) and probes ocsp_responses by primary key.
func (o *Ops) OCSPWork(ctx context.Context, issuerID string, now, refreshBefore time.Time, limit int) ([]store.RevocationStatus, error) {
	list, err := queryAll(ctx, o, o.r, scanStatus, `
		SELECT `+statusColumns+`
		FROM certificates c LEFT JOIN ocsp_responses r ON r.serial = c.serial
		WHERE c.issuer_id = $1 AND c.not_after > $2
			AND (r.serial IS NULL OR r.next_update <= $3 OR r.revoked <> (c.status = 'revoked'))
		ORDER BY r.next_update NULLS FIRST, c.serial
		LIMIT $4`, issuerID, o.time(now), o.time(refreshBefore), limit)
	if err != nil {
		return nil, o.errorf("OCSP work of %q: %w", issuerID, err)
	}
	return list, nil
}

// putOCSPResponseSQL stores one response under the conditions of
// store.Store: an OCSP put may not contradict a revocation. The issuer and
// the certificate's notAfter are taken from the certificate row, and its
// status is checked in the same statement, so a response contradicting a
// committed revocation is never stored; a stored response is replaced by a
// revoked one, or by a newer one of the same status, never by a good one
// over a revoked one.
const putOCSPResponseSQL = `
	INSERT INTO ocsp_responses (serial, issuer_id, revoked, this_update, next_update, cert_not_after, der)
	SELECT c.serial, c.issuer_id, $2, $3, $4, c.not_after, $5
	FROM certificates c WHERE c.serial = $1 AND (c.status = 'revoked') = $2
	ON CONFLICT (serial) DO UPDATE SET revoked = excluded.revoked,
		this_update = excluded.this_update, next_update = excluded.next_update, der = excluded.der
	WHERE (excluded.revoked AND NOT ocsp_responses.revoked)
		OR (excluded.revoked = ocsp_responses.revoked AND excluded.this_update >= ocsp_responses.this_update)`

// PutOCSPResponse stores r under the conditions of store.Store.
func (o *Ops) PutOCSPResponse(ctx context.Context, r store.OCSPResponse) error {
	errs, err := o.PutOCSPResponses(ctx, []store.OCSPResponse{r})
	if err != nil {
		return err
	}
	return errs[0]
}

// PutOCSPResponses stores rs as one unit of the writer's ExecAll (Postgres:
// one pipeline, one round trip; SQLite: one write transaction). A response
// the statement did not store gets its reason from ocspNotStored.
func (o *Ops) PutOCSPResponses(ctx context.Context, rs []store.OCSPResponse) ([]error, error) {
	errs := make([]error, len(rs))
	if len(rs) == 0 {
		return errs, nil
	}
	stmts := make([]Stmt, len(rs))
	for i, r := range rs {
		stmts[i] = Stmt{Query: putOCSPResponseSQL, Args: []any{r.Serial, r.Revoked, o.time(r.ThisUpdate), o.time(r.NextUpdate), r.DER}}
	}
	counts, err := o.w.ExecAll(ctx, stmts)
	if err != nil {
		if counts != nil && len(counts) < len(rs) {
			return nil, o.errorf("put OCSP response for %s: %w", rs[len(counts)].Serial, err)
		}
		return nil, o.errorf("put %d OCSP responses: %w", len(rs), err)
	}
	for i, n := range counts {
		if n != 1 {
			errs[i] = o.ocspNotStored(ctx, rs[i].Serial)
		}
	}
	return errs, nil
}

// ocspNotStored says why a response for serial was not stored: no such
// certificate, or a conflict with its status or a newer response.
func (o *Ops) ocspNotStored(ctx context.Context, serial string) error {
	if _, err := o.CertificateStatus(ctx, serial); err != nil {
		return o.errorf("put OCSP response: %w", err)
	}
	return o.errorf("put OCSP response for %s: status changed or a newer response is stored: %w", serial, store.ErrConflict)
}

// GetOCSPResponse returns the stored response for a serial (primary key):
// the OCSP responder's hot path, one single-row read (prepared on SQLite by
// its read querier; pgx caches the statement on Postgres).
func (o *Ops) GetOCSPResponse(ctx context.Context, serial string) (store.OCSPResponse, error) {
	r := store.OCSPResponse{Serial: serial}
	var thisUpdate, nextUpdate, notAfter NullTime
	err := o.r.QueryRow(ctx, `
		SELECT issuer_id, revoked, this_update, next_update, cert_not_after, der
		FROM ocsp_responses WHERE serial = $1`, serial).
		Scan(&r.IssuerID, &r.Revoked, &thisUpdate, &nextUpdate, &notAfter, &r.DER)
	if o.d.IsNoRows(err) {
		return store.OCSPResponse{}, o.errorf("OCSP response for %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.OCSPResponse{}, o.errorf("OCSP response for %s: %w", serial, o.d.MapErr(err))
	}
	r.ThisUpdate, r.NextUpdate, r.CertNotAfter = thisUpdate.Time, nextUpdate.Time, notAfter.Time
	return r, nil
}

// OCSPOldest returns the oldest response of the issuer's unexpired leaves
// (ocsp_responses_age_idx).
func (o *Ops) OCSPOldest(ctx context.Context, issuerID string, now time.Time) (time.Time, bool, error) {
	var oldest NullTime
	err := o.r.QueryRow(ctx, `
		SELECT min(this_update) FROM ocsp_responses WHERE issuer_id = $1 AND cert_not_after > $2`,
		issuerID, o.time(now)).Scan(&oldest)
	if err != nil {
		return time.Time{}, false, o.errorf("oldest OCSP response of %q: %w", issuerID, o.d.MapErr(err))
	}
	return oldest.Time, oldest.Valid, nil
}

// InsertOCSPResponder records a responder certificate. It reads the issuer's
// row with the dialect's ForShare, a lock shared with AbandonIssuers' row
// lock (Postgres FOR SHARE against its FOR UPDATE; on SQLite the single
// writer serialises them): a responder is never recorded for an issuer that
// has been retired (store.ErrConflict), and an abandon that commits after it
// sees it. An unknown issuer is store.ErrNotFound.
func (o *Ops) InsertOCSPResponder(ctx context.Context, r store.OCSPResponder) error {
	return o.w.InTx(ctx, func(tx Tx) error {
		var state store.IssuerState
		err := tx.QueryRow(ctx, `SELECT state FROM issuers WHERE id = $1`+o.d.ForShare, r.IssuerID).Scan(&state)
		if o.d.IsNoRows(err) {
			return o.errorf("OCSP responder %s: issuer %q: %w", r.Serial, r.IssuerID, store.ErrNotFound)
		}
		if err != nil {
			return o.errorf("OCSP responder %s: %w", r.Serial, o.d.MapErr(err))
		}
		if state == store.IssuerRetired {
			return o.errorf("OCSP responder %s: issuer %q is retired: %w", r.Serial, r.IssuerID, store.ErrConflict)
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO ocsp_responders (serial, issuer_id, key_uri, cert_der, not_before, not_after, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			r.Serial, r.IssuerID, r.KeyURI, r.CertDER, o.time(r.NotBefore), o.time(r.NotAfter), o.time(r.CreatedAt))
		if err != nil {
			return o.errorf("OCSP responder %s: %w", r.Serial, o.d.MapErr(err))
		}
		return nil
	})
}

// LatestOCSPResponder returns the issuer's responder that expires last
// (ocsp_responders_issuer_idx).
func (o *Ops) LatestOCSPResponder(ctx context.Context, issuerID string) (store.OCSPResponder, error) {
	r := store.OCSPResponder{IssuerID: issuerID}
	var notBefore, notAfter, created NullTime
	err := o.r.QueryRow(ctx, `
		SELECT serial, key_uri, cert_der, not_before, not_after, created_at
		FROM ocsp_responders WHERE issuer_id = $1
		ORDER BY not_after DESC, created_at DESC LIMIT 1`, issuerID).
		Scan(&r.Serial, &r.KeyURI, &r.CertDER, &notBefore, &notAfter, &created)
	if o.d.IsNoRows(err) {
		return store.OCSPResponder{}, o.errorf("OCSP responder of %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return store.OCSPResponder{}, o.errorf("OCSP responder of %q: %w", issuerID, o.d.MapErr(err))
	}
	r.NotBefore, r.NotAfter, r.CreatedAt = notBefore.Time, notAfter.Time, created.Time
	return r, nil
}
