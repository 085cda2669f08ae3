package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// testLease checks TryLease: one holder at a time, shared with
// TryLeadership's exclusion, a lease context that stays live while held
// and is cancelled at release (and not lost by a healthy holder).
func testLease(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	lease, release, ok, err := s.TryLease(ctx, "lease")
	if err != nil || !ok {
		t.Fatalf("first TryLease = %v, %v; want granted", ok, err)
	}
	if _, _, ok, err := s.TryLease(ctx, "lease"); ok || err != nil {
		t.Fatalf("second TryLease while held = %v, %v; want refused", ok, err)
	}
	if _, ok, err := s.TryLeadership(ctx, "lease"); ok || err != nil {
		t.Fatalf("TryLeadership while the lease is held = %v, %v; want refused", ok, err)
	}
	select {
	case <-lease.Done():
		t.Fatalf("lease ended while held by a healthy holder: %v", context.Cause(lease))
	case <-time.After(2500 * time.Millisecond): // past one lease ping of the Postgres store
	}
	release()
	release() // idempotent
	if lease.Err() == nil {
		t.Fatal("lease context still live after release")
	}
	if context.Cause(lease) == store.ErrLeaseLost {
		t.Fatal("a released lease reports ErrLeaseLost")
	}
	_, again, ok, err := s.TryLease(ctx, "lease")
	if err != nil || !ok {
		t.Fatalf("TryLease after release = %v, %v; want granted", ok, err)
	}
	again()
	// A lease derived from a cancelled context ends with it.
	cctx, cancel := context.WithCancel(ctx)
	lease, release, ok, err = s.TryLease(cctx, "lease")
	if err != nil || !ok {
		t.Fatalf("TryLease = %v, %v; want granted", ok, err)
	}
	cancel()
	if lease.Err() == nil {
		t.Error("lease still live after its parent context was cancelled")
	}
	release()
}
