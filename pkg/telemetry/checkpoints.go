package telemetry

import (
	"context"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// AuditHead implements store.Store, timed.
func (s *Store) AuditHead(ctx context.Context) (e store.AuditEntry, err error) {
	defer s.timed("AuditHead")(&err)
	return s.inner.AuditHead(ctx)
}

// InsertAuditCheckpoint implements store.Store, timed.
func (s *Store) InsertAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) (out store.AuditCheckpoint, err error) {
	defer s.timed("InsertAuditCheckpoint")(&err)
	return s.inner.InsertAuditCheckpoint(ctx, c)
}

// AuditCheckpoints implements store.Store, timed.
func (s *Store) AuditCheckpoints(ctx context.Context, afterID int64, limit int) (list []store.AuditCheckpoint, err error) {
	defer s.timed("AuditCheckpoints")(&err)
	return s.inner.AuditCheckpoints(ctx, afterID, limit)
}

// LatestAuditCheckpoint implements store.Store, timed.
func (s *Store) LatestAuditCheckpoint(ctx context.Context) (c store.AuditCheckpoint, err error) {
	defer s.timed("LatestAuditCheckpoint")(&err)
	return s.inner.LatestAuditCheckpoint(ctx)
}
