package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const certColumns = `serial, issuer_id, spiffe_id, dns_names, not_before, not_after, der,
	public_key_sha256, status, revoked_at, coalesce(revocation_reason, ''), provenance::text,
	policy_rule, policy_version, coalesce(renewed_from, ''), created_at,
	lineage, repository, token_issuer, subject, lineage_started_at, coalesce(superseded_by, '')`

func scanCert(row pgx.Row, extra ...any) (store.Certificate, error) {
	var c store.Certificate
	var notBefore, notAfter, revokedAt, created, started *time.Time
	var provenance *string
	err := row.Scan(append([]any{&c.Serial, &c.IssuerID, &c.SPIFFEID, &c.DNSNames, &notBefore, &notAfter, &c.DER,
		&c.PublicKeySHA256, &c.Status, &revokedAt, &c.RevocationReason, &provenance,
		&c.PolicyRule, &c.PolicyVersion, &c.RenewedFrom, &created,
		&c.Lineage, &c.Repository, &c.TokenIssuer, &c.Subject, &started, &c.SupersededBy}, extra...)...)
	if err != nil {
		return store.Certificate{}, err
	}
	if len(c.DNSNames) == 0 {
		c.DNSNames = nil
	}
	if provenance != nil {
		c.Provenance = []byte(*provenance)
	}
	c.NotBefore, c.NotAfter = fromTS(notBefore), fromTS(notAfter)
	c.RevokedAt, c.CreatedAt = fromTS(revokedAt), fromTS(created)
	c.LineageStartedAt = fromTS(started)
	return c, nil
}

func collectCerts(rows pgx.Rows) ([]store.Certificate, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Certificate, error) { return scanCert(r) })
}

// RecordIssuance commits the certificate row and its audit entry, grouped
// with concurrent calls into one transaction (groupcommit.go); it returns
// only after that transaction committed. store.ErrConflict if the serial is
// taken, store.ErrNotFound if the issuer does not exist; on any error nothing
// was recorded for this call, except that the outcome is unknown when the
// commit itself failed (the error wraps store.ErrUnavailable) or ctx ended
// while the group was in flight (a row without a returned certificate, never
// the reverse).
//
// A renewal (RenewedFrom set) does not join a group: it takes its own
// transaction (recordRenewal), whose conditional update of the predecessor
// must fail that renewal alone.
func (s *Store) RecordIssuance(ctx context.Context, c store.Certificate, e store.AuditEntry) (store.AuditEntry, error) {
	if c.RenewedFrom != "" {
		return s.recordRenewal(ctx, c, e)
	}
	return s.gc.record(ctx, c, e)
}

// GetCertificate returns one certificate by serial, with its lineage's
// Origin (lineages primary key), or store.ErrNotFound.
func (s *Store) GetCertificate(ctx context.Context, serial string) (store.Certificate, error) {
	var origin *string
	c, err := scanCert(s.pool.QueryRow(ctx, `SELECT `+certColumns+`,
		(SELECT l.provenance::text FROM lineages l WHERE l.lineage = certificates.lineage)
		FROM certificates WHERE serial = $1`, serial), &origin)
	if err == nil && origin != nil {
		c.Origin = []byte(*origin)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Certificate{}, fmt.Errorf("postgres: certificate %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.Certificate{}, fmt.Errorf("postgres: get certificate %s: %w", serial, mapErr(err))
	}
	return c, nil
}

// RevokedCertificates returns the issuer's revoked, unexpired certificates
// by serial (index certificates_issuer_idx).
func (s *Store) RevokedCertificates(ctx context.Context, issuerID string, now time.Time) ([]store.Certificate, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+certColumns+` FROM certificates
		WHERE issuer_id = $1 AND status = 'revoked' AND not_after > $2
		ORDER BY serial`, issuerID, ts(now))
	if err != nil {
		return nil, fmt.Errorf("postgres: revoked certificates of %q: %w", issuerID, mapErr(err))
	}
	list, err := collectCerts(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: revoked certificates of %q: %w", issuerID, mapErr(err))
	}
	return list, nil
}
