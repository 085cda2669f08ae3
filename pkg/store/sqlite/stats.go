package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// CertificateStats counts the inventory as of now; see the Postgres store.
func (s *Store) CertificateStats(ctx context.Context, now, since time.Time) (store.CertificateStats, error) {
	st := store.CertificateStats{Now: now, Since: since, ByStatus: map[store.CertStatus]int64{}}
	var active, expired, revoked int64
	n := now.UnixMicro()
	err := s.r.QueryRowContext(ctx, `SELECT
			coalesce(sum(status = 'active' AND not_after > ?), 0),
			coalesce(sum(status = 'active' AND not_after <= ?), 0),
			coalesce(sum(status = 'revoked'), 0)
		FROM certificates`, n, n).Scan(&active, &expired, &revoked)
	if err != nil {
		return st, fmt.Errorf("sqlite: certificate stats: %w", mapErr(err))
	}
	st.ByStatus[store.CertActive], st.ByStatus[store.CertExpired], st.ByStatus[store.CertRevoked] = active, expired, revoked
	lower := now
	for _, b := range store.ExpiryBuckets {
		upper := now.Add(b)
		var c int64
		if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM certificates
			WHERE status = 'active' AND not_after > ? AND not_after <= ?`, lower.UnixMicro(), upper.UnixMicro()).Scan(&c); err != nil {
			return st, fmt.Errorf("sqlite: certificate stats: %w", mapErr(err))
		}
		st.Expiring = append(st.Expiring, c)
		lower = upper
	}
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM certificates WHERE created_at >= ?`, since.UnixMicro()).Scan(&st.IssuedSince); err != nil {
		return st, fmt.Errorf("sqlite: certificate stats: %w", mapErr(err))
	}
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM audit_log WHERE decision = 'deny' AND time >= ?`, since.UnixMicro()).Scan(&st.DeniedSince); err != nil {
		return st, fmt.Errorf("sqlite: certificate stats: %w", mapErr(err))
	}
	return st, nil
}
