package storetest

import (
	"sort"
	"sync"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func testCRLNumbers(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	mustIssuer(t, s, "b")
	for i, want := range []struct {
		issuer string
		n      int64
	}{{"a", 1}, {"a", 2}, {"b", 1}, {"a", 3}, {"b", 2}} {
		n, err := s.NextCRLNumber(ctx, want.issuer)
		if err != nil || n != want.n {
			t.Fatalf("call %d: NextCRLNumber(%s) = %d, %v; want %d", i, want.issuer, n, err, want.n)
		}
	}
	_, err := s.NextCRLNumber(ctx, "nobody")
	wantErr(t, "CRL number of an unknown issuer", err, store.ErrNotFound)
}

func testCRLNumbersConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	const workers, each = 8, 15
	var mu sync.Mutex
	var all []int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for i := 0; i < each; i++ {
				n, err := s.NextCRLNumber(ctx, "a")
				if err != nil {
					t.Errorf("NextCRLNumber: %v", err)
					return
				}
				if n <= last {
					t.Errorf("one caller got %d after %d", n, last)
				}
				last = n
				mu.Lock()
				all = append(all, n)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for i, n := range all {
		if n != int64(i+1) {
			t.Fatalf("numbers handed out: %v; want each of 1..%d exactly once", all, workers*each)
		}
	}
}
