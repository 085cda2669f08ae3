package bundle_test

import (
	"context"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// countingSource is an in-memory VersionSource that counts reads and can
// fail like an unreachable database.
type countingSource struct {
	mu       sync.Mutex
	versions []store.BundleVersion
	latest   int // LatestBundleSequence calls
	gets     int // GetBundleVersion calls
	down     bool
}

func (s *countingSource) LatestBundleSequence(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest++
	if s.down {
		return 0, store.ErrUnavailable
	}
	return int64(len(s.versions)), nil
}

func (s *countingSource) GetBundleVersion(_ context.Context, seq int64) (store.BundleVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gets++
	if s.down {
		return store.BundleVersion{}, store.ErrUnavailable
	}
	if seq < 1 || seq > int64(len(s.versions)) {
		return store.BundleVersion{}, store.ErrNotFound
	}
	return s.versions[seq-1], nil
}

func (s *countingSource) add(t *testing.T, cn string) {
	t.Helper()
	c, err := bundle.NewContent([]*x509.Certificate{selfSigned(t, cn, t0, true)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.versions = append(s.versions, store.BundleVersion{Sequence: int64(len(s.versions) + 1), CreatedAt: t0, Content: c.Marshal()})
}

func (s *countingSource) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func TestCacheServesTheLatestVersionCheaply(t *testing.T) {
	ctx := context.Background()
	src := &countingSource{}
	clk := clock.NewFake(t0)
	c := bundle.NewCache(src, clk, nil, bundle.ServeConfig{RefreshHint: 10 * time.Minute, Recheck: 5 * time.Second})

	if _, err := c.Current(ctx); !errors.Is(err, bundle.ErrNoBundle) {
		t.Fatalf("Current with nothing published: %v, want ErrNoBundle", err)
	}
	src.add(t, "one")
	p1, err := c.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Sequence != 1 || p1.MaxAge != 5*time.Minute || p1.PEMETag == p1.JSONETag || p1.PEMETag[0] != '"' {
		t.Errorf("first version = seq %d, max-age %v, ETags %s %s", p1.Sequence, p1.MaxAge, p1.PEMETag, p1.JSONETag)
	}
	for range 100 {
		if p, _ := c.Current(ctx); p != p1 {
			t.Fatal("a cached version was re-rendered within the recheck interval")
		}
	}
	if src.latest != 2 || src.gets != 1 {
		t.Errorf("store reads within the recheck interval: %d sequence checks, %d version reads; want 2 and 1", src.latest, src.gets)
	}

	clk.Advance(6 * time.Second)
	if p, _ := c.Current(ctx); p != p1 || src.gets != 1 {
		t.Errorf("an unchanged sequence re-read the version (%d reads)", src.gets)
	}
	src.add(t, "two")
	if p, _ := c.Current(ctx); p != p1 {
		t.Errorf("a new version was seen before the recheck interval passed")
	}
	clk.Advance(6 * time.Second)
	p2, err := c.Current(ctx)
	if err != nil || p2.Sequence != 2 || p2.PEMETag == p1.PEMETag || p2.JSONETag == p1.JSONETag {
		t.Fatalf("after the recheck: %+v, %v; want version 2 with new ETags", p2, err)
	}

	// The database goes away: the cached copy is still served.
	src.setDown(true)
	clk.Advance(6 * time.Second)
	if p, err := c.Current(ctx); err != nil || p != p2 {
		t.Errorf("with the store down Current = %v, %v; want the cached version 2", p, err)
	}
	cold := bundle.NewCache(src, clk, nil, bundle.ServeConfig{})
	if _, err := cold.Current(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a cold cache with the store down: %v, want store.ErrUnavailable", err)
	}
}
