package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const certColumns = `serial, issuer_id, spiffe_id, dns_names, not_before, not_after, der,
	public_key_sha256, status, revoked_at, coalesce(revocation_reason, ''), provenance,
	policy_rule, policy_version, coalesce(renewed_from, ''), created_at,
	lineage, repository, token_issuer, subject, lineage_started_at, coalesce(superseded_by, '')`

func scanCert(row scanner) (store.Certificate, error) { return scanCertExtra(row) }

func scanCertExtra(row scanner, extra ...any) (store.Certificate, error) {
	var c store.Certificate
	var dns string
	var notBefore, notAfter, revokedAt, created, started sql.NullInt64
	var provenance sql.NullString
	err := row.Scan(append([]any{&c.Serial, &c.IssuerID, &c.SPIFFEID, &dns, &notBefore, &notAfter, &c.DER,
		&c.PublicKeySHA256, &c.Status, &revokedAt, &c.RevocationReason, &provenance,
		&c.PolicyRule, &c.PolicyVersion, &c.RenewedFrom, &created,
		&c.Lineage, &c.Repository, &c.TokenIssuer, &c.Subject, &started, &c.SupersededBy}, extra...)...)
	if err != nil {
		return store.Certificate{}, err
	}
	if err := json.Unmarshal([]byte(dns), &c.DNSNames); err != nil {
		return store.Certificate{}, fmt.Errorf("certificate %s: dns_names: %w", c.Serial, err)
	}
	if len(c.DNSNames) == 0 {
		c.DNSNames = nil
	}
	if provenance.Valid {
		c.Provenance = json.RawMessage(provenance.String)
	}
	c.NotBefore, c.NotAfter = fromUS(notBefore), fromUS(notAfter)
	c.RevokedAt, c.CreatedAt = fromUS(revokedAt), fromUS(created)
	c.LineageStartedAt = fromUS(started)
	return c, nil
}

func queryCerts(ctx context.Context, q querier, query string, args ...any) ([]store.Certificate, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	list, err := collectRows(rows, scanCert)
	if err != nil {
		return nil, mapErr(err)
	}
	return list, nil
}

// The enrollment path's writes, prepared once on the write connection.
const (
	insertCertificateSQL = `
		INSERT INTO certificates (serial, issuer_id, spiffe_id, dns_names, not_before, not_after,
			der, public_key_sha256, status, revoked_at, revocation_reason, provenance,
			policy_rule, policy_version, renewed_from, created_at,
			lineage, repository, token_issuer, subject, lineage_started_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''), ?, ?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?, ?)`
	insertLineageSQL = `INSERT INTO lineages (lineage, started_at, provenance) VALUES (?, ?, ?)
		ON CONFLICT (lineage) DO NOTHING`
	supersedeSQL = `
		UPDATE certificates SET superseded_by = ?
		WHERE serial = ? AND superseded_by IS NULL
		RETURNING lineage, repository, token_issuer, subject, lineage_started_at`
	markTokenSQL = `
		INSERT INTO used_tokens (key, expires_at) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
		WHERE used_tokens.expires_at <= ?`
	auditHeadSQL   = `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`
	insertAuditSQL = `
		INSERT INTO audit_log (seq, time, actor, action, target, decision, reason,
			policy_version, request_id, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// RecordIssuance commits the certificate row and its audit entry in one
// transaction. store.ErrConflict if the serial is taken, store.ErrNotFound if
// the issuer (or a renewal's predecessor) does not exist, store.ErrSuperseded
// if a renewal's predecessor was already renewed; on any error nothing was
// recorded. A renewal marks its predecessor superseded with a conditional
// update in the same transaction and inherits its lineage fields.
func (s *Store) RecordIssuance(ctx context.Context, c store.Certificate, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	fn, err := s.recordWrite(c, e, &out)
	if err != nil {
		return store.AuditEntry{}, err
	}
	// The group commit (groupcommit.go): many issuances, with their audit
	// entries chained in order, in one transaction and one WAL sync.
	if err := s.grouped(ctx, "record certificate "+c.Serial, fn); err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// recordWrite is RecordIssuance's write, for a group transaction; it sets
// *out to the appended audit entry.
func (s *Store) recordWrite(c store.Certificate, e store.AuditEntry, out *store.AuditEntry) (func(context.Context, *sql.Tx) error, error) {
	if c.Status == "" {
		c.Status = store.CertActive
	}
	dns := c.DNSNames
	if dns == nil {
		dns = []string{}
	}
	dnsJSON, err := json.Marshal(dns)
	if err != nil {
		return nil, fmt.Errorf("sqlite: record certificate %s: %w", c.Serial, err)
	}
	var provenance any
	if len(c.Provenance) > 0 {
		if !json.Valid(c.Provenance) {
			return nil, fmt.Errorf("sqlite: record certificate %s: provenance is not JSON", c.Serial)
		}
		provenance = string(c.Provenance)
	}
	if c.RenewedFrom == "" {
		c.Lineage, c.LineageStartedAt = c.Serial, c.CreatedAt
	}
	return func(ctx context.Context, tx *sql.Tx) error {
		c := c // supersede fills in this copy
		if c.RenewedFrom != "" {
			if err := s.supersede(ctx, tx, &c); err != nil {
				return err
			}
		}
		_, err := s.txExec(ctx, tx, insertCertificateSQL,
			c.Serial, c.IssuerID, c.SPIFFEID, string(dnsJSON), us(c.NotBefore), us(c.NotAfter),
			c.DER, c.PublicKeySHA256, c.Status, us(c.RevokedAt), c.RevocationReason, provenance,
			c.PolicyRule, c.PolicyVersion, c.RenewedFrom, us(c.CreatedAt),
			c.Lineage, c.Repository, c.TokenIssuer, c.Subject, us(c.LineageStartedAt))
		if isForeignKeyViolation(err) {
			return fmt.Errorf("sqlite: record certificate %s: issuer %q: %w", c.Serial, c.IssuerID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: record certificate %s: %w", c.Serial, mapErr(err))
		}
		// An enrollment's provenance is its lineage's (lineages, migration 14).
		if c.RenewedFrom == "" && provenance != nil {
			if _, err := s.txExec(ctx, tx, insertLineageSQL, c.Serial, us(c.CreatedAt), provenance); err != nil {
				return fmt.Errorf("sqlite: record lineage %s: %w", c.Serial, mapErr(err))
			}
		}
		*out, err = s.appendAuditTx(ctx, tx, e)
		return err
	}, nil
}

// supersede marks c's predecessor renewed by c, only if nothing renewed it
// before, and copies its lineage fields into c.
func (s *Store) supersede(ctx context.Context, tx *sql.Tx, c *store.Certificate) error {
	var started sql.NullInt64
	err := s.txQueryRow(ctx, tx, supersedeSQL,
		c.Serial, c.RenewedFrom).Scan(&c.Lineage, &c.Repository, &c.TokenIssuer, &c.Subject, &started)
	if errors.Is(err, sql.ErrNoRows) {
		var by string
		err = tx.QueryRowContext(ctx, `SELECT coalesce(superseded_by, '') FROM certificates WHERE serial = ?`, c.RenewedFrom).Scan(&by)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: record renewal %s: predecessor %s: %w", c.Serial, c.RenewedFrom, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: record renewal %s: %w", c.Serial, mapErr(err))
		}
		return fmt.Errorf("sqlite: record renewal %s: %s was already renewed as %s: %w", c.Serial, c.RenewedFrom, by, store.ErrSuperseded)
	}
	if err != nil {
		return fmt.Errorf("sqlite: record renewal %s: %w", c.Serial, mapErr(err))
	}
	c.LineageStartedAt = fromUS(started)
	if c.Lineage == "" { // a predecessor recorded before lineages: it starts one
		c.Lineage, c.LineageStartedAt = c.RenewedFrom, c.CreatedAt
	}
	return nil
}

// GetCertificate returns one certificate by serial, or store.ErrNotFound.
func (s *Store) GetCertificate(ctx context.Context, serial string) (store.Certificate, error) {
	var origin sql.NullString
	c, err := scanCertExtra(s.readRow(ctx, `SELECT `+certColumns+`,
		(SELECT l.provenance FROM lineages l WHERE l.lineage = certificates.lineage)
		FROM certificates WHERE serial = ?`, serial), &origin)
	if err == nil && origin.Valid {
		c.Origin = json.RawMessage(origin.String)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.Certificate{}, fmt.Errorf("sqlite: certificate %s: %w", serial, store.ErrNotFound)
	}
	if err != nil {
		return store.Certificate{}, fmt.Errorf("sqlite: get certificate %s: %w", serial, mapErr(err))
	}
	return c, nil
}

// RevokedCertificates returns the issuer's revoked, unexpired certificates
// by serial (index certificates_issuer_idx).
func (s *Store) RevokedCertificates(ctx context.Context, issuerID string, now time.Time) ([]store.Certificate, error) {
	list, err := queryCerts(ctx, s.r, `
		SELECT `+certColumns+` FROM certificates
		WHERE issuer_id = ? AND status = 'revoked' AND not_after > ?
		ORDER BY serial`, issuerID, now.UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("sqlite: revoked certificates of %q: %w", issuerID, err)
	}
	return list, nil
}
