package sqlstore

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// CertificateStats counts the inventory as of now: by status (one pass over
// certificates: callers cache it), active certificates expiring in each of
// store.ExpiryBuckets (certificates_expiry_order_idx), issued since since
// (certificates_created_idx) and denials since since
// (audit_log_denials_idx). A zero since counts none (NULL).
func (o *Ops) CertificateStats(ctx context.Context, now, since time.Time) (store.CertificateStats, error) {
	st := store.CertificateStats{Now: now, Since: since, ByStatus: map[store.CertStatus]int64{}}
	var active, expired, revoked int64
	// Both engines have the aggregate FILTER clause (SQLite since 3.30).
	err := o.r.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE status = 'active' AND not_after > $1),
			count(*) FILTER (WHERE status = 'active' AND not_after <= $1),
			count(*) FILTER (WHERE status = 'revoked')
		FROM certificates`, o.time(now)).Scan(&active, &expired, &revoked)
	if err != nil {
		return st, o.errorf("certificate stats: %w", o.d.MapErr(err))
	}
	st.ByStatus[store.CertActive], st.ByStatus[store.CertExpired], st.ByStatus[store.CertRevoked] = active, expired, revoked
	lower := now
	for _, b := range store.ExpiryBuckets {
		upper := now.Add(b)
		var n int64
		if err := o.r.QueryRow(ctx, `SELECT count(*) FROM certificates
			WHERE status = 'active' AND not_after > $1 AND not_after <= $2`, o.time(lower), o.time(upper)).Scan(&n); err != nil {
			return st, o.errorf("certificate stats: %w", o.d.MapErr(err))
		}
		st.Expiring = append(st.Expiring, n)
		lower = upper
	}
	if err := o.r.QueryRow(ctx, `SELECT count(*) FROM certificates WHERE created_at >= $1`, o.time(since)).Scan(&st.IssuedSince); err != nil {
		return st, o.errorf("certificate stats: %w", o.d.MapErr(err))
	}
	if err := o.r.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE decision = 'deny' AND time >= $1`, o.time(since)).Scan(&st.DeniedSince); err != nil {
		return st, o.errorf("certificate stats: %w", o.d.MapErr(err))
	}
	return st, nil
}
