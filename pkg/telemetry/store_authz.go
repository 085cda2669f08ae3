package telemetry

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RequestAuthzOverride implements store.Store, timed.
func (s *Store) RequestAuthzOverride(ctx context.Context, o store.AuthzOverride, e store.AuditEntry) (out store.AuthzOverride, entry store.AuditEntry, err error) {
	defer s.timed("RequestAuthzOverride")(&err)
	return s.inner.RequestAuthzOverride(ctx, o, e)
}

// ApproveAuthzOverride implements store.Store, timed.
func (s *Store) ApproveAuthzOverride(ctx context.Context, id, by string, at time.Time, e store.AuditEntry) (out store.AuthzOverride, entry store.AuditEntry, err error) {
	defer s.timed("ApproveAuthzOverride")(&err)
	return s.inner.ApproveAuthzOverride(ctx, id, by, at, e)
}

// EndAuthzOverride implements store.Store, timed.
func (s *Store) EndAuthzOverride(ctx context.Context, id, by string, at time.Time, e store.AuditEntry) (out store.AuthzOverride, entry store.AuditEntry, err error) {
	defer s.timed("EndAuthzOverride")(&err)
	return s.inner.EndAuthzOverride(ctx, id, by, at, e)
}

// GetAuthzOverride implements store.Store, timed.
func (s *Store) GetAuthzOverride(ctx context.Context, id string) (out store.AuthzOverride, err error) {
	defer s.timed("GetAuthzOverride")(&err)
	return s.inner.GetAuthzOverride(ctx, id)
}

// ActiveAuthzOverrides implements store.Store, timed.
func (s *Store) ActiveAuthzOverrides(ctx context.Context, service string, now time.Time) (out []store.AuthzOverride, err error) {
	defer s.timed("ActiveAuthzOverrides")(&err)
	return s.inner.ActiveAuthzOverrides(ctx, service, now)
}

// ListAuthzOverrides implements store.Store, timed.
func (s *Store) ListAuthzOverrides(ctx context.Context, limit int) (out []store.AuthzOverride, err error) {
	defer s.timed("ListAuthzOverrides")(&err)
	return s.inner.ListAuthzOverrides(ctx, limit)
}

// AddAuthzReportCounts implements store.Store, timed.
func (s *Store) AddAuthzReportCounts(ctx context.Context, rows []store.AuthzReportCount, e store.AuditEntry) (entry store.AuditEntry, err error) {
	defer s.timed("AddAuthzReportCounts")(&err)
	return s.inner.AddAuthzReportCounts(ctx, rows, e)
}

// ListAuthzReportCounts implements store.Store, timed.
func (s *Store) ListAuthzReportCounts(ctx context.Context, service string, from, to time.Time, limit int) (out []store.AuthzReportCount, err error) {
	defer s.timed("ListAuthzReportCounts")(&err)
	return s.inner.ListAuthzReportCounts(ctx, service, from, to, limit)
}
