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

// ListCertificates returns one page of certificates matching f in f.Order();
// see store.Store. The orders read certificates_created_idx (OrderNewest),
// certificates_identity_order_idx (Identity; OrderIdentity for
// IdentityPrefix) and certificates_expiry_order_idx (OrderExpiry for
// ExpiringWithin), from the cursor on.
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
		// certificates_repository_col_idx (migration 000007).
		add("repository = ?", q.Repository)
	}
	if q.Lineage != "" {
		// certificates_lineage_idx (migration 000007).
		add("lineage = ?", q.Lineage)
	}
	if !q.IssuedSince.IsZero() {
		add("created_at >= ?", q.IssuedSince.UnixMicro())
	}
	order := "created_at DESC, serial DESC"
	switch q.Order {
	case store.OrderIdentity:
		order = "spiffe_id, created_at DESC, serial DESC"
		if q.After {
			add("spiffe_id >= ? AND (spiffe_id > ? OR (created_at, serial) < (?, ?))",
				q.AfterSPIFFEID, q.AfterSPIFFEID, q.AfterCreatedAt.UnixMicro(), q.AfterSerial)
		}
	case store.OrderExpiry:
		order = "not_after, serial"
		if q.After {
			add("(not_after, serial) > (?, ?)", q.AfterNotAfter.UnixMicro(), q.AfterSerial)
		}
	default:
		if q.After {
			add("(created_at, serial) < (?, ?)", q.AfterCreatedAt.UnixMicro(), q.AfterSerial)
		}
	}
	sql := `SELECT ` + certColumns + ` FROM certificates`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY " + order + " LIMIT ?"
	args = append(args, q.Limit+1)

	page, err := queryCerts(ctx, s.r, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: list certificates: %w", err)
	}
	var next string
	if len(page) > q.Limit {
		page = page[:q.Limit]
		next = q.NextCursor(page[len(page)-1])
	}
	return page, next, nil
}
