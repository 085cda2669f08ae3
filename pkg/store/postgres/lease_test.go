package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
)

// TestLeaseEndsWithinItsBoundWhenTheSessionStopsAnswering cuts the
// leader's Postgres traffic without a reset (a partition): the lease's
// context is cancelled, with ErrLeaseLost as its cause, within the ping
// interval plus the ping timeout (4 s), not when TCP gives up (30 s+).
func TestLeaseEndsWithinItsBoundWhenTheSessionStopsAnswering(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p := testkit.PartitionProxy(t, u.Host)
	u.Host = p.Addr()
	ctx := context.Background()
	s, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	lease, release, ok, err := s.TryLease(ctx, "crl")
	if !ok || err != nil {
		t.Fatalf("TryLease = %v, %v; want granted", ok, err)
	}
	defer release()
	if _, _, ok, err := other.TryLease(ctx, "crl"); ok || err != nil {
		t.Fatalf("second TryLease while held = %v, %v; want refused", ok, err)
	}
	// A healthy session keeps its lease across several pings.
	select {
	case <-lease.Done():
		t.Fatalf("lease ended while the session answered: %v", context.Cause(lease))
	case <-time.After(5 * time.Second):
	}

	p.Cut()
	cut := time.Now()
	select {
	case <-lease.Done():
	case <-time.After(6 * time.Second):
		t.Fatal("lease still held 6 s after the cut")
	}
	took := time.Since(cut)
	if took > 4500*time.Millisecond {
		t.Errorf("lease ended %v after the cut; want within 4 s (+ scheduling)", took)
	}
	if cause := context.Cause(lease); !errors.Is(cause, store.ErrLeaseLost) {
		t.Errorf("lease cause = %v; want store.ErrLeaseLost", cause)
	}
	t.Logf("lease ended %v after the cut: %v", took.Round(time.Millisecond), context.Cause(lease))
	release() // after a lost lease: returns at once, nothing left to unlock
	p.Heal()
}

// TestReleasedLeaseSessionReturnsWithThePoolsBounds checks that the
// session that held a lease (which sets tighter server-side TCP bounds)
// goes back to the pool with the pool's own bounds, and that release
// cancels the lease's context.
func TestReleasedLeaseSessionReturnsWithThePoolsBounds(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(testkit.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "1") // the lease's session is the only one
	u.RawQuery = q.Encode()
	s, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lease, release, ok, err := s.TryLease(ctx, "retention")
	if !ok || err != nil {
		t.Fatalf("TryLease = %v, %v", ok, err)
	}
	release()
	if lease.Err() == nil {
		t.Error("lease context not cancelled at release")
	}
	for name, want := range map[string]string{"tcp_keepalives_idle": "15", "tcp_keepalives_interval": "5", "tcp_user_timeout": "30000"} {
		v, err := s.ShowSetting(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if v != want {
			t.Errorf("pooled session %s = %q after release, want %q", name, v, want)
		}
	}
	// And the one session can take the lease again.
	_, again, ok, err := s.TryLease(ctx, "retention")
	if !ok || err != nil {
		t.Fatalf("TryLease after release = %v, %v", ok, err)
	}
	again()
}
