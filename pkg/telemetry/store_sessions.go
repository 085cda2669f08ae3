package telemetry

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// CreateSession implements store.SessionStore, timed.
func (s *Store) CreateSession(ctx context.Context, ds store.DashboardSession) (err error) {
	defer s.timed("CreateSession")(&err)
	return s.inner.CreateSession(ctx, ds)
}

// GetSession implements store.SessionStore, timed.
func (s *Store) GetSession(ctx context.Context, idHash string, now time.Time) (ds store.DashboardSession, err error) {
	defer s.timed("GetSession")(&err)
	return s.inner.GetSession(ctx, idHash, now)
}

// TouchSession implements store.SessionStore, timed.
func (s *Store) TouchSession(ctx context.Context, idHash string, now, idleUntil time.Time) (err error) {
	defer s.timed("TouchSession")(&err)
	return s.inner.TouchSession(ctx, idHash, now, idleUntil)
}

// DeleteSession implements store.SessionStore, timed.
func (s *Store) DeleteSession(ctx context.Context, idHash string) (err error) {
	defer s.timed("DeleteSession")(&err)
	return s.inner.DeleteSession(ctx, idHash)
}

// PruneSessions implements store.SessionStore, timed.
func (s *Store) PruneSessions(ctx context.Context, now time.Time) (n int64, err error) {
	defer s.timed("PruneSessions")(&err)
	return s.inner.PruneSessions(ctx, now)
}
