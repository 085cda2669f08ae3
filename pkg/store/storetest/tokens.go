package storetest

import (
	"errors"
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
}
