package hold_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hold"
	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestRecheck(t *testing.T) {
	testkit.EachStore(t, testRecheck)
}

func testRecheck(t *testing.T, st store.Store) {
	ctx := context.Background()
	const held, free = "spiffe://example.org/prod/payments", "spiffe://example.org/prod/ledger"

	t.Run("another replica's hold is seen at once", func(t *testing.T) {
		r := newReplicas(t, st)
		id := held + "/at-once"
		if err := r.b.Recheck(ctx, id); err != nil {
			t.Fatal(err)
		}
		r.place(t, r.a, id)
		wantOnHold(t, "Recheck right after another replica's hold", r.b.Recheck(ctx, id))
		if err := r.b.Recheck(ctx, free); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("never answered by a listing that started before the call", func(t *testing.T) {
		r := newReplicas(t, st)
		id := held + "/ordering"
		inFlight, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		hook := func() { once.Do(func() { close(inFlight); <-release }) }
		r.st.afterRead.Store(&hook)
		first := make(chan error, 1)
		go func() { first <- r.b.Recheck(ctx, id) }()
		<-inFlight // the first listing has read: no hold yet
		r.place(t, r.a, id)
		second := make(chan error, 1)
		go func() { second <- r.b.Recheck(ctx, id) }()
		// The second call must wait for a listing of its own.
		time.Sleep(50 * time.Millisecond)
		close(release)
		if err := <-first; err != nil {
			t.Fatalf("the call made before the hold: %v", err)
		}
		wantOnHold(t, "the call made after the hold, while an older listing was in flight", <-second)
		if l := r.st.list.Load(); l != 2 {
			t.Fatalf("%d listings, want 2", l)
		}
	})

	t.Run("concurrent rechecks share listings", func(t *testing.T) {
		r := newReplicas(t, st)
		id := held + "/concurrent"
		r.place(t, r.a, id)
		checkConcurrently(t, r.b.Recheck, id, free, 10)
		if l, o := r.st.list.Load(), r.st.one.Load(); l >= 640 || o != 0 {
			t.Fatalf("640 concurrent rechecks: %d listings, %d point reads; want fewer listings than calls and no point read", l, o)
		}
		t.Logf("640 concurrent rechecks: %d listings", r.st.list.Load())
	})

	t.Run("a failed or panicking listing falls back to point reads, which fail closed", func(t *testing.T) {
		r := newReplicas(t, st)
		id := held + "/failing"
		r.place(t, r.a, id)
		r.st.listFail.Store(true)
		wantOnHold(t, "Recheck while listing fails", r.b.Recheck(ctx, id))
		if err := r.b.Recheck(ctx, free); err != nil {
			t.Fatalf("Recheck of a free identity while listing fails: %v", err)
		}
		r.st.oneFail.Store(true)
		if err := r.b.Recheck(ctx, free); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Recheck with the store down: %v, want ErrUnavailable (fail closed)", err)
		}
		r.st.oneFail.Store(false)
		r.st.listFail.Store(false)
		r.st.listPanic.Store(true)
		wantOnHold(t, "Recheck while listing panics", r.b.Recheck(ctx, id))
		r.st.listPanic.Store(false)
		l := r.st.list.Load()
		if err := r.b.Recheck(ctx, free); err != nil || r.st.list.Load() != l+1 {
			t.Fatalf("after a panicked listing: %v, %d listings; want a new listing", err, r.st.list.Load()-l)
		}
	})

	t.Run("more than 64 holds in force: point reads for a second", func(t *testing.T) {
		r := newReplicas(t, st)
		id := held + "/many"
		already, err := st.ActiveHolds(ctx, r.clk.Now(), 0) // the other subtests' holds share the store
		if err != nil || len(already) > 64 {
			t.Fatalf("%d holds in force already, %v", len(already), err)
		}
		for i := range 64 - len(already) {
			r.place(t, r.a, fmt.Sprintf("%s/many-%d", held, i))
		}
		if err := r.b.Recheck(ctx, free); err != nil { // lists 64 holds: below the bound
			t.Fatal(err)
		}
		r.place(t, r.a, id)
		if err := r.b.Recheck(ctx, free); err != nil { // lists 65
			t.Fatal(err)
		}
		l, o := r.st.list.Load(), r.st.one.Load()
		if l != 2 || o != 0 {
			t.Fatalf("%d listings, %d point reads; want 2 and 0", l, o)
		}
		for range 3 {
			if err := r.b.Recheck(ctx, free); err != nil {
				t.Fatal(err)
			}
		}
		wantOnHold(t, "Recheck point by point", r.b.Recheck(ctx, id))
		if r.st.list.Load() != l || r.st.one.Load() != 4 {
			t.Fatalf("with 65 holds in force: %d more listings, %d point reads; want 0 and 4", r.st.list.Load()-l, r.st.one.Load())
		}
		r.clk.Advance(hold.PrecheckMaxAge)
		if err := r.b.Recheck(ctx, free); err != nil || r.st.list.Load() != l+1 {
			t.Fatalf("after %s: %v, %d listings; want a listing again", hold.PrecheckMaxAge, err, r.st.list.Load())
		}
	})

	t.Run("the hold that ends last, as Check says", func(t *testing.T) {
		r := newReplicas(t, st)
		id := held + "/two-holds"
		for _, h := range []hold.Request{
			{SPIFFEID: id, Duration: 2 * time.Hour, Reason: "keyCompromise", Actor: "corp-idp:rita"},
			{SPIFFEID: id, Duration: time.Hour, Reason: "affiliationChanged", Actor: "corp-idp:rita"},
		} {
			if _, err := r.a.Place(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		var fromCheck, fromRecheck *hold.OnHoldError
		if !errors.As(r.b.Check(ctx, id), &fromCheck) || !errors.As(r.b.Recheck(ctx, id), &fromRecheck) {
			t.Fatal("not on hold")
		}
		if *fromCheck != *fromRecheck || fromRecheck.Reason != "keyCompromise" {
			t.Fatalf("Recheck = %+v, Check = %+v; want the same, the 2-hour keyCompromise hold", *fromRecheck, *fromCheck)
		}
	})

	t.Run("a caller that gives up gets its context's error", func(t *testing.T) {
		r := newReplicas(t, st)
		release := make(chan struct{})
		hook := func() { <-release }
		r.st.afterRead.Store(&hook)
		defer close(release)
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := r.b.Recheck(cctx, free); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Recheck past its deadline: %v", err)
		}
	})
}
