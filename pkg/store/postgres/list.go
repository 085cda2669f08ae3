package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// likeEscaper quotes LIKE's wildcards so that a prefix matches literally.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// ListCertificates returns one page of certificates matching f, newest first;
// see store.Store. Each filter maps to an index: certificates_identity_idx
// (Identity, IdentityPrefix: spiffe_id is COLLATE "C" so LIKE 'p%' is a range
// scan), certificates_status_expiry_idx (Status, ExpiringWithin),
// certificates_issuer_idx (IssuerID), certificates_created_idx (the keyset
// order itself).
func (s *Store) ListCertificates(ctx context.Context, f store.CertificateFilter) ([]store.Certificate, string, error) {
	q, err := f.Query()
	if err != nil {
		return nil, "", fmt.Errorf("postgres: list certificates: %w", err)
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Identity != "" {
		where = append(where, "spiffe_id = "+arg(q.Identity))
	}
	if q.IdentityPrefix != "" {
		where = append(where, "spiffe_id LIKE "+arg(likeEscaper.Replace(q.IdentityPrefix)+"%"))
	}
	switch q.Status {
	case store.CertActive:
		where = append(where, "status = 'active' AND not_after > "+arg(ts(q.Now)))
	case store.CertExpired:
		where = append(where, "status = 'active' AND not_after <= "+arg(ts(q.Now)))
	case store.CertRevoked:
		where = append(where, "status = 'revoked'")
	}
	if q.ExpiringWithin > 0 {
		where = append(where, "status = 'active' AND not_after > "+arg(ts(q.Now))+
			" AND not_after <= "+arg(ts(q.Now.Add(q.ExpiringWithin))))
	}
	if q.IssuerID != "" {
		where = append(where, "issuer_id = "+arg(q.IssuerID))
	}
	if q.Repository != "" {
		// certificates_repository_idx (migration 000005).
		where = append(where, "(provenance -> 'claims' ->> 'repository') = "+arg(q.Repository))
	}
	if !q.IssuedSince.IsZero() {
		where = append(where, "created_at >= "+arg(ts(q.IssuedSince)))
	}
	if q.After {
		where = append(where, "(created_at, serial) < ("+arg(ts(q.AfterCreatedAt))+", "+arg(q.AfterSerial)+")")
	}
	sql := `SELECT ` + certColumns + ` FROM certificates`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	order := "created_at DESC, serial DESC"
	if q.ExpiringWithin > 0 && q.Identity == "" && q.IdentityPrefix == "" && q.Repository == "" {
		// The expiry window is the selective part: read it from
		// certificates_expiry_keyset_idx and sort the newest, rather than
		// walk certificates_created_idx past rows that expire later
		// (seconds at a million rows, for a deep cursor).
		order = "created_at + interval '0 microseconds' DESC, serial DESC"
	}
	sql += " ORDER BY " + order + " LIMIT " + arg(q.Limit+1)

	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: list certificates: %w", mapErr(err))
	}
	page, err := collectCerts(rows)
	if err != nil {
		return nil, "", fmt.Errorf("postgres: list certificates: %w", mapErr(err))
	}
	var next string
	if len(page) > q.Limit {
		page = page[:q.Limit]
		next = store.NextCursor(page[len(page)-1])
	}
	return page, next, nil
}
