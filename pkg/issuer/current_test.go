package issuer

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// stallingList is a real store whose ListIssuers, once armed, announces
// itself on entered and waits for release: a database query that has not
// answered yet.
type stallingList struct {
	store.Store
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *stallingList) ListIssuers(ctx context.Context) ([]store.Issuer, error) {
	if s.armed.CompareAndSwap(true, false) {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.Store.ListIssuers(ctx)
}

func TestGetDoesNotWaitForARecheckUnderWay(t *testing.T) {
	keys, real := softwareSQLite(t)
	ctx := context.Background()
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	st := &stallingList{Store: real, entered: make(chan struct{}), release: make(chan struct{})}
	d := Deps{Keys: keys, Store: st, Clock: clk, Log: slog.New(slog.DiscardHandler)}
	cfg := integrationConfig()
	if _, err := Init(ctx, d, cfg); err != nil {
		t.Fatalf("Init: %v", err)
	}
	cur, err := NewCurrent(ctx, d, cfg, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	loaded := cur.Get(ctx)

	clk.Advance(2 * time.Second) // the next Get rechecks
	st.armed.Store(true)
	rechecked := make(chan *Issuer)
	go func() { rechecked <- cur.Get(ctx) }()
	<-st.entered // the recheck is inside its query, holding whatever it holds

	// Many callers sign meanwhile: each gets the loaded Issuer at once,
	// and issues with it, while the recheck's query has not answered. A
	// Get that waited for the recheck would never return here, since the
	// query answers only after this loop.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := cur.Get(ctx); got != loaded {
				t.Errorf("caller %d got another Issuer during the recheck", i)
			}
			if _, err := cur.Issue(ctx, Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/during-recheck", Actor: "test"}); err != nil {
				t.Errorf("caller %d: Issue during the recheck: %v", i, err)
			}
			_ = cur.ActiveIssuerID()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a hang guard, not a timing figure
		close(st.release)
		t.Fatal("callers of Get waited for the recheck's database query")
	}
	close(st.release)
	if got := <-rechecked; got != loaded {
		t.Errorf("the recheck replaced the Issuer though nothing changed")
	}
	// The recheck counted: the next Get within the interval does not query.
	st.armed.Store(true)
	if got := cur.Get(ctx); got != loaded {
		t.Error("Get after the recheck returned another Issuer")
	}
	if !st.armed.Load() {
		t.Error("a Get within the recheck interval queried the store again")
	}
}

func TestReloadWaitsForARecheckUnderWayAndSeesAnActivation(t *testing.T) {
	keys, real := softwareSQLite(t)
	r := newRotationRig(t, keys, real)
	before := r.cur.ActiveIssuerID()
	if _, err := r.rot.Rotate(r.ctx, RotateOptions{}); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	r.advance(testOverlap + time.Minute)
	r.tick()
	// Concurrent Gets and Reloads under -race: one reload at a time, no
	// torn state, and every caller ends on the newly active intermediate.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(2)
		go func() { defer wg.Done(); _ = r.cur.Get(r.ctx) }()
		go func() {
			defer wg.Done()
			if _, err := r.cur.Reload(r.ctx); err != nil {
				t.Errorf("Reload: %v", err)
			}
		}()
	}
	wg.Wait()
	if after := r.cur.ActiveIssuerID(); after == before {
		t.Fatalf("still signing with %s after the activation and a reload", before)
	}
}
