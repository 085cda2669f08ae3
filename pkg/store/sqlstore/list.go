package sqlstore

import (
	"context"
	"strconv"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// ListCertificates returns one page of certificates matching f in f.Order();
// see store.Store. Each order is one range scan of an index from the cursor
// on: certificates_created_idx (OrderNewest; Status and IssuerID filter it,
// on Postgres certificates_revoked_created_idx serves Status revoked),
// certificates_identity_order_idx (Identity, newest first; OrderIdentity for
// IdentityPrefix, which Dialect.HasPrefix makes a range),
// certificates_expiry_order_idx (OrderExpiry for ExpiringWithin),
// certificates_repository_col_idx (Repository), certificates_lineage_idx
// (Lineage). Migrations 000006 and 000007.
func (o *Ops) ListCertificates(ctx context.Context, f store.CertificateFilter) ([]store.Certificate, string, error) {
	q, err := f.Query()
	if err != nil {
		return nil, "", o.errorf("list certificates: %w", err)
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
		where = append(where, o.d.HasPrefix("spiffe_id", arg(o.d.PrefixPattern(q.IdentityPrefix))))
	}
	switch q.Status {
	case store.CertActive:
		where = append(where, "status = 'active' AND not_after > "+arg(o.time(q.Now)))
	case store.CertExpired:
		where = append(where, "status = 'active' AND not_after <= "+arg(o.time(q.Now)))
	case store.CertRevoked:
		where = append(where, "status = 'revoked'")
	}
	if q.ExpiringWithin > 0 {
		where = append(where, "status = 'active' AND not_after > "+arg(o.time(q.Now))+
			" AND not_after <= "+arg(o.time(q.Now.Add(q.ExpiringWithin))))
	}
	if q.IssuerID != "" {
		where = append(where, "issuer_id = "+arg(q.IssuerID))
	}
	if q.Repository != "" {
		where = append(where, "repository = "+arg(q.Repository))
	}
	if q.Lineage != "" {
		where = append(where, "lineage = "+arg(q.Lineage))
	}
	if !q.IssuedSince.IsZero() {
		where = append(where, "created_at >= "+arg(o.time(q.IssuedSince)))
	}
	order := "created_at DESC, serial DESC"
	switch q.Order {
	case store.OrderIdentity:
		order = "spiffe_id, created_at DESC, serial DESC"
		if q.After {
			id := arg(q.AfterSPIFFEID)
			where = append(where, "spiffe_id >= "+id+" AND (spiffe_id > "+id+
				" OR (created_at, serial) < ("+arg(o.time(q.AfterCreatedAt))+", "+arg(q.AfterSerial)+"))")
		}
	case store.OrderExpiry:
		order = "not_after, serial"
		if q.After {
			where = append(where, "(not_after, serial) > ("+arg(o.time(q.AfterNotAfter))+", "+arg(q.AfterSerial)+")")
		}
	default:
		if q.After {
			where = append(where, "(created_at, serial) < ("+arg(o.time(q.AfterCreatedAt))+", "+arg(q.AfterSerial)+")")
		}
	}
	sql := `SELECT ` + o.d.CertColumns + ` FROM certificates`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY " + order + " LIMIT " + arg(q.Limit+1)

	page, err := queryAll(ctx, o, o.r, o.scanCert, sql, args...)
	if err != nil {
		return nil, "", o.errorf("list certificates: %w", err)
	}
	var next string
	if len(page) > q.Limit {
		page = page[:q.Limit]
		next = q.NextCursor(page[len(page)-1])
	}
	return page, next, nil
}
