package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// globEscaper quotes GLOB's wildcards so that a prefix matches literally
// (GLOB, unlike LIKE, is case-sensitive, and a literal prefix uses the index).
var globEscaper = strings.NewReplacer(`*`, `[*]`, `?`, `[?]`, `[`, `[[]`)

// ListCertificates returns one page of certificates matching f, newest first;
// see store.Store. Each filter maps to an index: certificates_identity_idx
// (Identity, IdentityPrefix), certificates_status_expiry_idx (Status,
// ExpiringWithin), certificates_issuer_idx (IssuerID),
// certificates_created_idx (the keyset order itself).
func (s *Store) ListCertificates(ctx context.Context, f store.CertificateFilter) ([]store.Certificate, string, error) {
	q, err := f.Query()
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: list certificates: %w", err)
	}
	var where []string
	var args []any
	add := func(cond string, vals ...any) {
		where = append(where, cond)
		args = append(args, vals...)
	}
	now := q.Now.UnixMicro()
	if q.Identity != "" {
		add("spiffe_id = ?", q.Identity)
	}
	if q.IdentityPrefix != "" {
		add("spiffe_id GLOB ?", globEscaper.Replace(q.IdentityPrefix)+"*")
	}
	switch q.Status {
	case store.CertActive:
		add("status = 'active' AND not_after > ?", now)
	case store.CertExpired:
		add("status = 'active' AND not_after <= ?", now)
	case store.CertRevoked:
		add("status = 'revoked'")
	}
	if q.ExpiringWithin > 0 {
		add("status = 'active' AND not_after > ? AND not_after <= ?", now, q.Now.Add(q.ExpiringWithin).UnixMicro())
	}
	if q.IssuerID != "" {
		add("issuer_id = ?", q.IssuerID)
	}
	if q.Repository != "" {
		// certificates_repository_idx (migration 000005).
		add("json_extract(provenance, '$.claims.repository') = ?", q.Repository)
	}
	if !q.IssuedSince.IsZero() {
		add("created_at >= ?", q.IssuedSince.UnixMicro())
	}
	if q.After {
		add("(created_at, serial) < (?, ?)", q.AfterCreatedAt.UnixMicro(), q.AfterSerial)
	}
	sql := `SELECT ` + certColumns + ` FROM certificates`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY created_at DESC, serial DESC LIMIT ?"
	args = append(args, q.Limit+1)

	page, err := queryCerts(ctx, s.r, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: list certificates: %w", err)
	}
	var next string
	if len(page) > q.Limit {
		page = page[:q.Limit]
		next = store.NextCursor(page[len(page)-1])
	}
	return page, next, nil
}
