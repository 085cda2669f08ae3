package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// CertificateStatus returns one certificate's revocation state (primary
// key), or store.ErrNotFound.
func (s *Store) CertificateStatus(ctx context.Context, serial string) (store.RevocationStatus, error) {
	list, err := collectStatuses(s.pool.Query(ctx, `
		SELECT serial, issuer_id, not_after, status = 'revoked', revoked_at, coalesce(revocation_reason, '')
		FROM certificates WHERE serial = $1`, serial))
	if err != nil {
		return store.RevocationStatus{}, fmt.Errorf("postgres: status of %s: %w", serial, err)
	}
	if len(list) == 0 {
		return store.RevocationStatus{}, fmt.Errorf("postgres: status of %s: %w", serial, store.ErrNotFound)
	}
	return list[0], nil
}

// OCSPWork returns leaves whose response is missing, due or contradicts the
// certificate's status. It walks the issuer's unexpired leaves
// (certificates_issuer_idx) and probes ocsp_responses by primary key.
func (s *Store) OCSPWork(ctx context.Context, issuerID string, now, refreshBefore time.Time, limit int) ([]store.RevocationStatus, error) {
	list, err := collectStatuses(s.pool.Query(ctx, `
		SELECT c.serial, c.issuer_id, c.not_after, c.status = 'revoked', c.revoked_at,
			coalesce(c.revocation_reason, '')
		FROM certificates c LEFT JOIN ocsp_responses r ON r.serial = c.serial
		WHERE c.issuer_id = $1 AND c.not_after > $2
			AND (r.serial IS NULL OR r.next_update <= $3 OR r.revoked <> (c.status = 'revoked'))
		ORDER BY r.next_update NULLS FIRST, c.serial
		LIMIT $4`, issuerID, ts(now), ts(refreshBefore), limit))
	if err != nil {
		return nil, fmt.Errorf("postgres: OCSP work of %q: %w", issuerID, err)
	}
	return list, nil
}

func collectStatuses(rows pgx.Rows, err error) ([]store.RevocationStatus, error) {
	if err != nil {
		return nil, mapErr(err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.RevocationStatus, error) {
		var e store.RevocationStatus
		var notAfter, revokedAt *time.Time
		err := r.Scan(&e.Serial, &e.IssuerID, &notAfter, &e.Revoked, &revokedAt, &e.Reason)
		e.NotAfter, e.RevokedAt = fromTS(notAfter), fromTS(revokedAt)
		return e, err
	})
	return list, mapErr(err)
}

// putOCSPResponseSQL stores one response under the conditions of
// store.Store. The issuer and the certificate's notAfter are taken from the
// certificate row, and its status is checked in the same statement, so a
// response contradicting a committed revocation is never stored.
const putOCSPResponseSQL = `
	INSERT INTO ocsp_responses (serial, issuer_id, revoked, this_update, next_update, cert_not_after, der)
	SELECT c.serial, c.issuer_id, $2, $3, $4, c.not_after, $5
	FROM certificates c WHERE c.serial = $1 AND (c.status = 'revoked') = $2
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

// PutOCSPResponses stores rs in one round trip: the statements go as one
// pipeline with a single Sync, which Postgres runs as one implicit
// transaction (a failing statement rolls back all of them).
func (s *Store) PutOCSPResponses(ctx context.Context, rs []store.OCSPResponse) ([]error, error) {
	errs := make([]error, len(rs))
	if len(rs) == 0 {
		return errs, nil
	}
	b := &pgx.Batch{}
	for _, r := range rs {
		b.Queue(putOCSPResponseSQL, r.Serial, r.Revoked, ts(r.ThisUpdate), ts(r.NextUpdate), r.DER)
	}
	var missed []int
	err := func() error {
		br := s.pool.SendBatch(ctx, b)
		defer br.Close()
		for i, r := range rs {
			tag, err := br.Exec()
			if err != nil {
				return fmt.Errorf("postgres: put OCSP response for %s: %w", r.Serial, mapErr(err))
			}
			if tag.RowsAffected() != 1 {
				missed = append(missed, i)
			}
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("postgres: put %d OCSP responses: %w", len(rs), mapErr(err))
		}
		return nil
	}()
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
		return fmt.Errorf("postgres: put OCSP response: %w", err)
	}
	return fmt.Errorf("postgres: put OCSP response for %s: status changed or a newer response is stored: %w", serial, store.ErrConflict)
}

// GetOCSPResponse returns the stored response for a serial (primary key).
func (s *Store) GetOCSPResponse(ctx context.Context, serial string) (store.OCSPResponse, error) {
	r := store.OCSPResponse{Serial: serial}
	var thisUpdate, nextUpdate, notAfter *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT issuer_id, revoked, this_update, next_update, cert_not_after, der
		FROM ocsp_responses WHERE serial = $1`, serial).
		Scan(&r.IssuerID, &r.Revoked, &thisUpdate, &nextUpdate, &notAfter, &r.DER)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.OCSPResponse{}, fmt.Errorf("postgres: OCSP response for %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.OCSPResponse{}, fmt.Errorf("postgres: OCSP response for %s: %w", serial, mapErr(err))
	}
	r.ThisUpdate, r.NextUpdate, r.CertNotAfter = fromTS(thisUpdate), fromTS(nextUpdate), fromTS(notAfter)
	return r, nil
}

// OCSPOldest returns the oldest response of the issuer's unexpired leaves
// (ocsp_responses_age_idx).
func (s *Store) OCSPOldest(ctx context.Context, issuerID string, now time.Time) (time.Time, bool, error) {
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT min(this_update) FROM ocsp_responses WHERE issuer_id = $1 AND cert_not_after > $2`,
		issuerID, ts(now)).Scan(&oldest)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("postgres: oldest OCSP response of %q: %w", issuerID, mapErr(err))
	}
	return fromTS(oldest), oldest != nil, nil
}

// InsertOCSPResponder records a responder certificate. It shares the
// issuer's row lock (FOR SHARE) so that it serialises with AbandonIssuers'
// FOR UPDATE: a responder is never recorded for an issuer that has been
// retired, and an abandon that commits after it sees it.
func (s *Store) InsertOCSPResponder(ctx context.Context, r store.OCSPResponder) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var state store.IssuerState
		err := tx.QueryRow(ctx, `SELECT state FROM issuers WHERE id = $1 FOR SHARE`, r.IssuerID).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: OCSP responder %s: issuer %q: %w", r.Serial, r.IssuerID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: OCSP responder %s: %w", r.Serial, mapErr(err))
		}
		if state == store.IssuerRetired {
			return fmt.Errorf("postgres: OCSP responder %s: issuer %q is retired: %w", r.Serial, r.IssuerID, store.ErrConflict)
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO ocsp_responders (serial, issuer_id, key_uri, cert_der, not_before, not_after, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			r.Serial, r.IssuerID, r.KeyURI, r.CertDER, ts(r.NotBefore), ts(r.NotAfter), ts(r.CreatedAt))
		if err != nil {
			return fmt.Errorf("postgres: OCSP responder %s: %w", r.Serial, mapErr(err))
		}
		return nil
	})
}

// LatestOCSPResponder returns the issuer's responder that expires last
// (ocsp_responders_issuer_idx).
func (s *Store) LatestOCSPResponder(ctx context.Context, issuerID string) (store.OCSPResponder, error) {
	r := store.OCSPResponder{IssuerID: issuerID}
	var notBefore, notAfter, created *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT serial, key_uri, cert_der, not_before, not_after, created_at
		FROM ocsp_responders WHERE issuer_id = $1
		ORDER BY not_after DESC, created_at DESC LIMIT 1`, issuerID).
		Scan(&r.Serial, &r.KeyURI, &r.CertDER, &notBefore, &notAfter, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.OCSPResponder{}, fmt.Errorf("postgres: OCSP responder of %q: %w", issuerID, store.ErrNotFound)
	}
	if err != nil {
		return store.OCSPResponder{}, fmt.Errorf("postgres: OCSP responder of %q: %w", issuerID, mapErr(err))
	}
	r.NotBefore, r.NotAfter, r.CreatedAt = fromTS(notBefore), fromTS(notAfter), fromTS(created)
	return r, nil
}
