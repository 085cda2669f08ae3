package issuer

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

func softwareSQLite(t *testing.T) (KeyStore, store.Store) {
	t.Helper()
	ks, err := hsm.OpenSoftware(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	return ks, testkit.SQLite(t)
}

func TestActivateWithForceSkipsTheOverlap(t *testing.T) {
	keys, st := softwareSQLite(t)
	r := newRotationRig(t, keys, st)
	if _, err := r.rot.Rotate(r.ctx, RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := r.rot.Activate(r.ctx, ActivateOptions{Actor: "admin", RequestID: "req-1", Force: true})
	if err != nil || !slices.Equal(res.Activated, []string{"int-2"}) || !slices.Equal(res.Retiring, []string{"int-1"}) {
		t.Fatalf("forced Activate = %+v, %v", res, err)
	}
	if _, err := r.rot.Activate(r.ctx, ActivateOptions{Force: true}); !errors.Is(err, ErrNotReady) {
		t.Errorf("Activate with nothing prepared: %v, want ErrNotReady", err)
	}
	if changed, err := r.cur.Reload(r.ctx); err != nil || !changed || r.cur.Get(r.ctx).ActiveIssuerID() != "int-2" {
		t.Errorf("Reload after activation = %v, %v, signing with %s", changed, err, r.cur.Get(r.ctx).ActiveIssuerID())
	}
	entries, _ := st.AuditEntries(r.ctx, 0, 100)
	last := entries[len(entries)-1]
	if last.Action != "activate" || last.Actor != "admin" || last.RequestID != "req-1" {
		t.Errorf("last audit entry %+v; want the forced activation by admin", last)
	}
}

// A rollback that drops a new root from the bundle must hold back its
// activation: relying parties would not trust the new leaves.
func TestRollbackOfANewRootHoldsBackActivation(t *testing.T) {
	keys, st := softwareSQLite(t)
	r := newRotationRig(t, keys, st)
	res, err := r.rot.Rotate(r.ctx, RotateOptions{Root: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.pub.Rollback(r.ctx, bundle.RollbackOptions{ToSequence: res.Bundle.Sequence - 1, Actor: "admin"}); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	r.advance(2 * testOverlap)
	got := r.tick()
	if len(got.Activated) != 0 || !got.Pinned {
		t.Fatalf("Tick after the rollback = %+v; want no activation and the rollback pinned", got)
	}
	// The operator republishes; the overlap starts again from there.
	if _, err := r.pub.Publish(r.ctx, bundle.PublishOptions{Force: true, Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	r.advance(testOverlap - time.Minute)
	if got := r.tick(); len(got.Activated) != 0 {
		t.Fatalf("activated %v before the new root was republished for the overlap", got.Activated)
	}
	r.advance(2 * time.Minute)
	if got := r.tick(); !slices.Contains(got.Activated, "int-2") {
		t.Fatalf("Tick after the overlap since republishing = %+v", got)
	}
}

func TestRotateRefusesAnOfflineRoot(t *testing.T) {
	keys, st := softwareSQLite(t)
	ctx := context.Background()
	clk := clock.NewFake(time.Now())
	d := Deps{Keys: keys, Store: st, Clock: clk}
	cfg := integrationConfig()
	csr, _, err := NewIntermediateCSR(ctx, d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ImportIntermediate(ctx, d, cfg, newOfflineRoot(t, clk.Now()).sign(t, csr, clk.Now(), nil)); err != nil {
		t.Fatal(err)
	}
	pub, _ := bundle.NewPublisher(bundle.Deps{Store: st, Clock: clk})
	rot, err := NewRotator(RotatorDeps{Keys: keys, Store: st, Bundles: pub, Clock: clk}, cfg, RotationConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, root := range []bool{false, true} {
		if _, err := rot.Rotate(ctx, RotateOptions{Root: root}); !errors.Is(err, ErrOfflineRoot) {
			t.Errorf("Rotate(root=%v) under an offline root: %v, want ErrOfflineRoot", root, err)
		}
	}
}

// TestConcurrentTicksOnPostgres runs the background step on two replicas at
// once: the activation and retirement happen once, audited once.
func TestConcurrentTicksOnPostgres(t *testing.T) {
	ctx := context.Background()
	url := testkit.PostgresURL(t)
	dir := t.TempDir()
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	cfg := integrationConfig()
	var rots []*Rotator
	for i := range 2 {
		st, err := storeopen.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		keys, err := hsm.OpenSoftware(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = keys.Close() })
		if i == 0 {
			if _, err := Init(ctx, Deps{Keys: keys, Store: st, Clock: clk}, cfg); err != nil {
				t.Fatal(err)
			}
		}
		pub, _ := bundle.NewPublisher(bundle.Deps{Store: st, Clock: clk})
		rot, err := NewRotator(RotatorDeps{Keys: keys, Store: st, Bundles: pub, Clock: clk}, cfg, RotationConfig{Overlap: testOverlap})
		if err != nil {
			t.Fatal(err)
		}
		rots = append(rots, rot)
	}
	if _, err := rots[0].Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rots[1].Rotate(ctx, RotateOptions{Root: true}); err != nil {
		t.Fatal(err)
	}
	tickBoth := func() (all []string) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, rot := range rots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := rot.Tick(ctx)
				if err != nil {
					t.Errorf("Tick: %v", err)
				}
				mu.Lock()
				all = append(all, res.Activated...)
				all = append(all, res.Retired...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		slices.Sort(all)
		return all
	}
	clk.Advance(testOverlap)
	if got := tickBoth(); !slices.Equal(got, []string{"int-2", "root-2", "xc-2"}) {
		t.Errorf("two replicas activated %v; want each of int-2, root-2, xc-2 once", got)
	}
	clk.Advance(integrationConfigMaxTTL() + time.Minute)
	if got := tickBoth(); !slices.Equal(got, []string{"int-1", "root-1", "xc-2"}) {
		t.Errorf("two replicas retired %v; want each of int-1, root-1, xc-2 once", got)
	}
	st, _ := storeopen.Open(ctx, url)
	defer st.Close()
	entries, _ := st.AuditEntries(ctx, 0, 1000)
	counts := map[string]int{}
	for _, e := range entries {
		counts[e.Action]++
	}
	if counts["activate"] != 1 || counts["retire"] != 2 || counts["rotate"] != 1 {
		t.Errorf("audit actions %v; want one rotate, one activate, two retires (int-1, root-1)", counts)
	}
}
