package hold_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hold"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// countingStore counts the hold reads that reach a real store; listFail
// and listFull make ActiveHolds fail, or list as many holds as it may.
type countingStore struct {
	hold.Store
	one, list                              atomic.Int64
	listFail, listFull, listPanic, oneFail atomic.Bool
	// afterRead, if set, is called after a listing read the store and
	// before it returns (a test holds a listing in flight with it).
	afterRead atomic.Pointer[func()]
}

func (c *countingStore) ActiveHold(ctx context.Context, id string, now time.Time) (store.Hold, error) {
	c.one.Add(1)
	if c.oneFail.Load() {
		return store.Hold{}, store.ErrUnavailable
	}
	return c.Store.ActiveHold(ctx, id, now)
}

func (c *countingStore) ActiveHolds(ctx context.Context, now time.Time, limit int) ([]store.Hold, error) {
	c.list.Add(1)
	switch {
	case c.listPanic.Load():
		panic("store panicked")
	case c.listFail.Load():
		return nil, store.ErrUnavailable
	case c.listFull.Load():
		full := make([]store.Hold, limit)
		for i := range full {
			full[i] = store.Hold{SPIFFEID: fmt.Sprintf("spiffe://example.org/many/%d", i), Until: now.Add(time.Hour)}
		}
		return full, nil
	}
	list, err := c.Store.ActiveHolds(ctx, now, limit)
	if f := c.afterRead.Load(); f != nil {
		(*f)()
	}
	return list, err
}

// replicas are two Holds on one real store (two `ca serve` on one
// database), with one fake clock.
type replicas struct {
	st   *countingStore
	clk  *clock.Fake
	a, b *hold.Holds
}

func newReplicas(t *testing.T, st store.Store) *replicas {
	r := &replicas{st: &countingStore{Store: st}, clk: clock.NewFake(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))}
	var err error
	if r.a, err = hold.New(r.st, r.clk, nil, nil); err != nil {
		t.Fatal(err)
	}
	if r.b, err = hold.New(r.st, r.clk, nil, nil); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *replicas) place(t *testing.T, h *hold.Holds, id string) {
	t.Helper()
	if _, err := h.Place(context.Background(), hold.Request{SPIFFEID: id, Duration: time.Hour, Reason: "keyCompromise", Actor: "corp-idp:rita"}); err != nil {
		t.Fatal(err)
	}
}

func wantOnHold(t *testing.T, what string, err error) {
	t.Helper()
	var oh *hold.OnHoldError
	if !errors.As(err, &oh) || oh.Reason != "keyCompromise" {
		t.Fatalf("%s: %v, want an *OnHoldError for keyCompromise", what, err)
	}
}

func TestPrecheck(t *testing.T) {
	testkit.EachStore(t, testPrecheck)
}

func testPrecheck(t *testing.T, st store.Store) {
	ctx := context.Background()
	const held, free = "spiffe://example.org/prod/payments", "spiffe://example.org/prod/ledger"

	t.Run("one store read per snapshot for identities not on hold", func(t *testing.T) {
		r := newReplicas(t, st)
		for i := range 100 {
			if err := r.a.Precheck(ctx, fmt.Sprintf("%s-%d", free, i)); err != nil {
				t.Fatal(err)
			}
		}
		if l, o := r.st.list.Load(), r.st.one.Load(); l != 1 || o != 0 {
			t.Fatalf("100 prechecks within %s: %d listings and %d single reads, want 1 and 0", hold.PrecheckMaxAge, l, o)
		}
		r.clk.Advance(hold.PrecheckMaxAge)
		if err := r.a.Precheck(ctx, free); err != nil || r.st.list.Load() != 2 {
			t.Fatalf("after %s: %v, %d listings (want a new snapshot)", hold.PrecheckMaxAge, err, r.st.list.Load())
		}
		r.clk.Advance(-time.Minute) // the clock went back: the snapshot is from the future
		if err := r.a.Precheck(ctx, free); err != nil || r.st.list.Load() != 3 {
			t.Fatalf("after the clock went back: %v, %d listings (want a new snapshot)", err, r.st.list.Load())
		}
	})

	t.Run("another replica's hold applies within the snapshot's age, this one's at once", func(t *testing.T) {
		r := newReplicas(t, st)
		id := held + "/other-replica"
		if err := r.b.Precheck(ctx, id); err != nil {
			t.Fatal(err)
		}
		r.place(t, r.a, id)
		wantOnHold(t, "Precheck on the replica that placed the hold", r.a.Precheck(ctx, id))
		// B's snapshot predates the hold: its precheck lets the request on,
		// and the check after recording (Check) refuses it.
		if err := r.b.Precheck(ctx, id); err != nil {
			t.Fatalf("Precheck on the other replica within its snapshot's age: %v (the documented window)", err)
		}
		wantOnHold(t, "Check on the other replica", r.b.Check(ctx, id))
		r.clk.Advance(hold.PrecheckMaxAge)
		wantOnHold(t, "Precheck on the other replica once its snapshot expired", r.b.Precheck(ctx, id))
		// A release through A applies on B at once: B's snapshot holds
		// the identity, so B reads the store.
		if _, err := r.a.Release(ctx, id, "corp-idp:rita", "req-1", ""); err != nil {
			t.Fatal(err)
		}
		if err := r.b.Precheck(ctx, id); err != nil {
			t.Fatalf("Precheck on the other replica after the release: %v", err)
		}
		if err := r.a.Precheck(ctx, id); err != nil {
			t.Fatalf("Precheck on the releasing replica: %v", err)
		}
	})

	t.Run("a snapshot that failed or is full answers nothing", func(t *testing.T) {
		r := newReplicas(t, st)
		id := held + "/failing"
		r.place(t, r.a, id)
		r.clk.Advance(hold.PrecheckMaxAge)
		r.st.listFail.Store(true)
		wantOnHold(t, "Precheck while listing fails", r.b.Precheck(ctx, id))
		if err := r.b.Precheck(ctx, free); err != nil {
			t.Fatal(err)
		}
		if l, o := r.st.list.Load(), r.st.one.Load(); l != 1 || o != 2 {
			t.Fatalf("two prechecks while listing fails: %d listings, %d single reads; want 1 and 2 (no retry within %s, each checked in the store)", l, o, hold.PrecheckMaxAge)
		}
		r.st.listFail.Store(false)
		r.st.listFull.Store(true)
		r.clk.Advance(hold.PrecheckMaxAge)
		for range 3 {
			if err := r.b.Precheck(ctx, free); err != nil {
				t.Fatal(err)
			}
		}
		wantOnHold(t, "Precheck with a full listing", r.b.Precheck(ctx, id))
		if l, o := r.st.list.Load(), r.st.one.Load(); l != 2 || o != 6 {
			t.Fatalf("four prechecks with a full listing: %d listings, %d single reads; want 2 and 6", l, o)
		}
	})

	t.Run("a listing that panicked does not stop the next", func(t *testing.T) {
		r := newReplicas(t, st)
		r.st.listPanic.Store(true)
		func() {
			defer func() { _ = recover() }() // as net/http recovers a handler
			_ = r.b.Precheck(ctx, free)
		}()
		r.st.listPanic.Store(false)
		if err := r.b.Precheck(ctx, free); err != nil {
			t.Fatal(err)
		}
		if l, o := r.st.list.Load(), r.st.one.Load(); l != 2 || o != 0 {
			t.Fatalf("after a panicked listing: %d listings, %d single reads; want a second listing", l, o)
		}
	})

	t.Run("concurrent prechecks share one snapshot", func(t *testing.T) {
		r := newReplicas(t, st)
		id := held + "/concurrent"
		r.place(t, r.a, id)
		checkConcurrently(t, r.b.Precheck, id, free, 20)
		if l := r.st.list.Load(); l != 1 {
			t.Fatalf("%d listings for 1,280 concurrent prechecks, want 1", l)
		}
	})
}

// checkConcurrently runs check from 32 goroutines, each rounds times for a
// distinct free identity and for the held one, and fails the test on any
// answer but nil for the former and ErrOnHold for the latter.
func checkConcurrently(t *testing.T, check func(context.Context, string) error, held, free string, rounds int) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 32*2*rounds)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				if err := check(ctx, fmt.Sprintf("%s-%d-%d", free, g, i)); err != nil {
					errs <- err
				}
				if err := check(ctx, held); !errors.Is(err, hold.ErrOnHold) {
					errs <- fmt.Errorf("held identity: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
