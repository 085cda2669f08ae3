package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func testUsedTokens(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	exp := t0.Add(10 * time.Minute)
	steps := []struct {
		name      string
		key       string
		expiresAt time.Time
		now       time.Time
		want      error
	}{
		{"a fresh token is accepted", "iss|jti-1", exp, t0, nil},
		{"the same token again is a replay", "iss|jti-1", exp, t0.Add(time.Minute), store.ErrConflict},
		{"a replay just before expiry is still refused", "iss|jti-1", exp, exp.Add(-time.Microsecond), store.ErrConflict},
		{"another token is accepted", "iss|jti-2", exp.Add(time.Hour), t0, nil},
		{"an expired leftover is replaced", "iss|jti-1", exp.Add(time.Hour), exp, nil},
		{"the replaced record refuses replays again", "iss|jti-1", exp.Add(time.Hour), exp.Add(time.Minute), store.ErrConflict},
	}
	for _, st := range steps {
		err := s.MarkTokenUsed(ctx, st.key, st.expiresAt, st.now)
		if st.want == nil && err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.want != nil {
			wantErr(t, st.name, err, st.want)
		}
	}
	if err := s.MarkTokenUsed(ctx, "iss|jti-3", t0.Add(time.Minute), t0); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneUsedTokens(ctx, t0.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PruneUsedTokens = %d, %v; want 1 (only jti-3 expired)", n, err)
	}
	wantErr(t, "jti-2 survives pruning", s.MarkTokenUsed(ctx, "iss|jti-2", exp, t0.Add(time.Minute)), store.ErrConflict)
	if err := s.MarkTokenUsed(ctx, "iss|jti-3", exp, t0.Add(time.Minute)); err != nil {
		t.Errorf("pruned jti-3 cannot be marked again: %v", err)
	}
}

func testUsedTokensConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const callers = 12
	for round := 0; round < 3; round++ {
		key := "iss|race-" + string(rune('a'+round))
		var wg sync.WaitGroup
		results := make(chan error, callers)
		for i := 0; i < callers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results <- s.MarkTokenUsed(ctx, key, t0.Add(time.Hour), t0)
			}()
		}
		wg.Wait()
		close(results)
		ok := 0
		for err := range results {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("concurrent MarkTokenUsed: %v", err)
			}
		}
		if ok != 1 {
			t.Errorf("%d of %d concurrent uses of one token succeeded, want exactly 1", ok, callers)
		}
	}
	// Many tokens at once, each used by several callers: stores that write
	// concurrent marks together (Postgres: one statement per group) must
	// still let exactly one use of each token through.
	wins := MarkRace(t, []store.Store{s}, "iss|many-", 24, 4)
	for k, n := range wins {
		if n != 1 {
			t.Errorf("token %s: %d uses succeeded, want exactly 1", k, n)
		}
	}
}

// MarkRace marks keys prefix0..prefix<keys-1>, each from uses goroutines
// spread over stores (replicas of one database), all released at once, and
// returns how many marks of each key succeeded. Any error other than
// store.ErrConflict fails the test.
func MarkRace(t *testing.T, stores []store.Store, prefix string, keys, uses int) map[string]int {
	t.Helper()
	ctx := ctxT(t)
	type result struct {
		key string
		err error
	}
	results := make(chan result, keys*uses)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for u := range uses {
		for k := range keys {
			// Each use walks the keys from another offset, so concurrent
			// groups hold shared keys in different arrival orders.
			key := fmt.Sprintf("%s%03d", prefix, (k+u*7)%keys)
			s := stores[u%len(stores)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results <- result{key, s.MarkTokenUsed(ctx, key, t0.Add(time.Hour), t0)}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(results)
	wins := make(map[string]int, keys)
	for r := range results {
		wins[r.key] += 0
		switch {
		case r.err == nil:
			wins[r.key]++
		case !errors.Is(r.err, store.ErrConflict):
			t.Errorf("MarkTokenUsed(%s): %v", r.key, r.err)
		}
	}
	if len(wins) != keys {
		t.Errorf("%d distinct keys marked, want %d", len(wins), keys)
	}
	return wins
}
