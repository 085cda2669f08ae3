package telemetry

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// PruneOCSPResponses implements store.RetentionStore, timed.
func (s *Store) PruneOCSPResponses(ctx context.Context, before time.Time, limit int) (n int64, err error) {
	defer s.timed("PruneOCSPResponses")(&err)
	return s.inner.PruneOCSPResponses(ctx, before, limit)
}

// PruneExpiredCertificates implements store.RetentionStore, timed.
func (s *Store) PruneExpiredCertificates(ctx context.Context, before time.Time, limit int) (n int64, err error) {
	defer s.timed("PruneExpiredCertificates")(&err)
	return s.inner.PruneExpiredCertificates(ctx, before, limit)
}

// PruneAuthzReportCounts implements store.RetentionStore, timed.
func (s *Store) PruneAuthzReportCounts(ctx context.Context, before time.Time, limit int) (n int64, err error) {
	defer s.timed("PruneAuthzReportCounts")(&err)
	return s.inner.PruneAuthzReportCounts(ctx, before, limit)
}

// PruneEndedHolds implements store.RetentionStore, timed.
func (s *Store) PruneEndedHolds(ctx context.Context, before time.Time, limit int) (n int64, err error) {
	defer s.timed("PruneEndedHolds")(&err)
	return s.inner.PruneEndedHolds(ctx, before, limit)
}

// RetentionStats implements store.RetentionStore, timed.
func (s *Store) RetentionStats(ctx context.Context) (st store.RetentionStats, err error) {
	defer s.timed("RetentionStats")(&err)
	return s.inner.RetentionStats(ctx)
}
