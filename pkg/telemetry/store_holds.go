package telemetry

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// PlaceHold implements store.Store, timed.
func (s *Store) PlaceHold(ctx context.Context, h store.Hold, e store.AuditEntry) (out store.Hold, entry store.AuditEntry, err error) {
	defer s.timed("PlaceHold")(&err)
	return s.inner.PlaceHold(ctx, h, e)
}

// ActiveHold implements store.Store, timed.
func (s *Store) ActiveHold(ctx context.Context, spiffeID string, now time.Time) (h store.Hold, err error) {
	defer s.timed("ActiveHold")(&err)
	return s.inner.ActiveHold(ctx, spiffeID, now)
}

// ActiveHolds implements store.Store, timed.
func (s *Store) ActiveHolds(ctx context.Context, now time.Time, limit int) (list []store.Hold, err error) {
	defer s.timed("ActiveHolds")(&err)
	return s.inner.ActiveHolds(ctx, now, limit)
}

// ReleaseHolds implements store.Store, timed.
func (s *Store) ReleaseHolds(ctx context.Context, spiffeID string, at time.Time, by string, e store.AuditEntry) (list []store.Hold, entry store.AuditEntry, err error) {
	defer s.timed("ReleaseHolds")(&err)
	return s.inner.ReleaseHolds(ctx, spiffeID, at, by, e)
}
