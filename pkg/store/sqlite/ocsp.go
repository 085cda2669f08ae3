package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// queryStatuses runs a query selecting serial, issuer_id, not_after,
// revoked (0/1), revoked_at, reason.
func queryStatuses(ctx context.Context, q querier, query string, args ...any) ([]store.RevocationStatus, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	list, err := collectRows(rows, func(row scanner) (store.RevocationStatus, error) {
		var e store.RevocationStatus
		var notAfter, revokedAt sql.NullInt64
		if err := row.Scan(&e.Serial, &e.IssuerID, &notAfter, &e.Revoked, &revokedAt, &e.Reason); err != nil {
			return store.RevocationStatus{}, err
		}
		e.NotAfter, e.RevokedAt = fromUS(notAfter), fromUS(revokedAt)
		return e, nil
	})
	if err != nil {
		return nil, mapErr(err)
	}
	return list, nil
}

// CertificateStatus returns one certificate's revocation state, or
// store.ErrNotFound.
func (s *Store) CertificateStatus(ctx context.Context, serial string) (store.RevocationStatus, error) {
	list, err := queryStatuses(ctx, s.r, `
		SELECT serial, issuer_id, not_after, status = 'revoked', revoked_at, coalesce(revocation_reason, '')
		FROM certificates WHERE serial = ?`, serial)
	if err != nil {
		return store.RevocationStatus{}, fmt.Errorf("sqlite: status of %s: %w", serial, err)
	}
	if len(list) == 0 {
		return store.RevocationStatus{}, fmt.Errorf("sqlite: status of %s: %w", serial, store.ErrNotFound)
	}
	return list[0], nil
}

// OCSPWork returns leaves whose response is missing, due or contradicts the
// certificate's status (certificates_issuer_idx, then the primary key of
// ocsp_responses).
func (s *Store) OCSPWork(ctx context.Context, issuerID string, now, refreshBefore time.Time, limit int) ([]store.RevocationStatus, error) {
	list, err := queryStatuses(ctx, s.r, `
		SELECT c.serial, c.issuer_id, c.not_after, c.status = 'revoked', c.revoked_at,
			coalesce(c.revocation_reason, '')
		FROM certificates c LEFT JOIN ocsp_responses r ON r.serial = c.serial
		WHERE c.issuer_id = ? AND c.not_after > ?
			AND (r.serial IS NULL OR r.next_update <= ? OR r.revoked <> (c.status = 'revoked'))
		ORDER BY r.next_update NULLS FIRST, c.serial
		LIMIT ?`, issuerID, us(now), us(refreshBefore), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: OCSP work of %q: %w", issuerID, err)
	}
	return list, nil
}

// putOCSPResponseSQL stores one response under the conditions of
// store.Store; see the Postgres store.
const putOCSPResponseSQL = `
	INSERT INTO ocsp_responses (serial, issuer_id, revoked, this_update, next_update, cert_not_after, der)
	SELECT c.serial, c.issuer_id, ?2, ?3, ?4, c.not_after, ?5
	FROM certificates c WHERE c.serial = ?1 AND (c.status = 'revoked') = ?2
	ON CONFLICT (serial) DO UPDATE SET revoked = excluded.revoked,
		this_update = excluded.this_update, next_update = excluded.next_update, der = excluded.der
	WHERE (excluded.revoked AND NOT ocsp_responses.revoked)
		OR (excluded.revoked = ocsp_responses.revoked AND excluded.this_update >= ocsp_responses.this_update)`

// PutOCSPResponse stores r under the conditions of store.Store.
func (s *Store) PutOCSPResponse(ctx context.Context, r store.OCSPResponse) error {
	errs, err := s.PutOCSPResponses(ctx, []store.OCSPResponse{r})
	if err != nil {
		return err
	}
	return errs[0]
}

// PutOCSPResponses stores rs in one write transaction.
func (s *Store) PutOCSPResponses(ctx context.Context, rs []store.OCSPResponse) ([]error, error) {
	errs := make([]error, len(rs))
	if len(rs) == 0 {
		return errs, nil
	}
	var missed []int
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		missed = missed[:0]
		for i, r := range rs {
			res, err := tx.ExecContext(ctx, putOCSPResponseSQL, r.Serial, r.Revoked, us(r.ThisUpdate), us(r.NextUpdate), r.DER)
			if err != nil {
				return fmt.Errorf("sqlite: put OCSP response for %s: %w", r.Serial, mapErr(err))
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				missed = append(missed, i)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, i := range missed {
		errs[i] = s.ocspNotStored(ctx, rs[i].Serial)
	}
	return errs, nil
}

// ocspNotStored says why a response for serial was not stored: no such
// certificate, or a conflict with its status or a newer response.
func (s *Store) ocspNotStored(ctx context.Context, serial string) error {
	if _, err := s.CertificateStatus(ctx, serial); err != nil {
		return fmt.Errorf("sqlite: put OCSP response: %w", err)
	}
	return fmt.Errorf("sqlite: put OCSP response for %s: status changed or a newer response is stored: %w", serial, store.ErrConflict)
}

// GetOCSPResponse returns the stored response for a serial.
func (s *Store) GetOCSPResponse(ctx context.Context, serial string) (store.OCSPResponse, error) {
	r := store.OCSPResponse{Serial: serial}
	var thisUpdate, nextUpdate, notAfter sql.NullInt64
	err := s.r.QueryRowContext(ctx, `
		SELECT issuer_id, revoked, this_update, next_update, cert_not_after, der
		FROM ocsp_responses WHERE serial = ?`, serial).
		Scan(&r.IssuerID, &r.Revoked, &thisUpdate, &nextUpdate, &notAfter, &r.DER)
	if errors.Is(err, sql.ErrNoRows) {
		return store.OCSPResponse{}, fmt.Errorf("sqlite: OCSP response for %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.OCSPResponse{}, fmt.Errorf("sqlite: OCSP response for %s: %w", serial, mapErr(err))
	}
	r.ThisUpdate, r.NextUpdate, r.CertNotAfter = fromUS(thisUpdate), fromUS(nextUpdate), fromUS(notAfter)
	return r, nil
}

// OCSPOldest returns the oldest response of the issuer's unexpired leaves
// (ocsp_responses_age_idx).
func (s *Store) OCSPOldest(ctx context.Context, issuerID string, now time.Time) (time.Time, bool, error) {
	var oldest sql.NullInt64
	err := s.r.QueryRowContext(ctx, `
		SELECT min(this_update) FROM ocsp_responses WHERE issuer_id = ? AND cert_not_after > ?`,
		issuerID, us(now)).Scan(&oldest)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("sqlite: oldest OCSP response of %q: %w", issuerID, mapErr(err))
	}
	return fromUS(oldest), oldest.Valid, nil
}

// InsertOCSPResponder records a responder certificate, in one write
// transaction with the check that its issuer exists and is not retired (the
// single writer serialises it with AbandonIssuers).
func (s *Store) InsertOCSPResponder(ctx context.Context, r store.OCSPResponder) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var state store.IssuerState
		err := tx.QueryRowContext(ctx, `SELECT state FROM issuers WHERE id = ?`, r.IssuerID).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: OCSP responder %s: issuer %q: %w", r.Serial, r.IssuerID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: OCSP responder %s: %w", r.Serial, mapErr(err))
		}
		if state == store.IssuerRetired {
			return fmt.Errorf("sqlite: OCSP responder %s: issuer %q is retired: %w", r.Serial, r.IssuerID, store.ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO ocsp_responders (serial, issuer_id, key_uri, cert_der, not_before, not_after, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			r.Serial, r.IssuerID, r.KeyURI, r.CertDER, us(r.NotBefore), us(r.NotAfter), us(r.CreatedAt))
		if err != nil {
			return fmt.Errorf("sqlite: OCSP responder %s: %w", r.Serial, mapErr(err))
		}
		return nil
	})
}

// LatestOCSPResponder returns the issuer's responder that expires last
// (ocsp_responders_issuer_idx).
func (s *Store) LatestOCSPResponder(ctx context.Context, issuerID string) (store.OCSPResponder, error) {
	r := store.OCSPResponder{IssuerID: issuerID}
	var notBefore, notAfter, created sql.NullInt64
	err := s.r.QueryRowContext(ctx, `
		SELECT serial, key_uri, cert_der, not_before, not_after, created_at
		FROM ocsp_responders WHERE issuer_id = ?
		ORDER BY not_after DESC, created_at DESC LIMIT 1`, issuerID).
		Scan(&r.Serial, &r.KeyURI, &r.CertDER, &notBefore, &notAfter, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.OCSPResponder{}, fmt.Errorf("sqlite: OCSP responder of %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return store.OCSPResponder{}, fmt.Errorf("sqlite: OCSP responder of %q: %w", issuerID, mapErr(err))
	}
	r.NotBefore, r.NotAfter, r.CreatedAt = fromUS(notBefore), fromUS(notAfter), fromUS(created)
	return r, nil
}
