package telemetry

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RecordRotation implements store.Store, timed.
func (s *Store) RecordRotation(ctx context.Context, issuers []store.Issuer, e store.AuditEntry) (entry store.AuditEntry, err error) {
	defer s.timed("RecordRotation")(&err)
	return s.inner.RecordRotation(ctx, issuers, e)
}

// AbandonIssuers implements store.Store, timed.
func (s *Store) AbandonIssuers(ctx context.Context, ids []string, at time.Time, e store.AuditEntry) (entry store.AuditEntry, err error) {
	defer s.timed("AbandonIssuers")(&err)
	return s.inner.AbandonIssuers(ctx, ids, at, e)
}
