package sqlite

import (
	"context"
	"sync"
)

// TryLeadership grants leadership to one holder per name within this Store:
// an SQLite database is served by a single process, so there are no other
// replicas to exclude, only other goroutines of this one.
func (s *Store) TryLeadership(ctx context.Context, name string) (func(), bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	v, _ := s.leaders.LoadOrStore(name, new(sync.Mutex))
	mu := v.(*sync.Mutex)
	if !mu.TryLock() {
		return nil, false, nil
	}
	var once sync.Once
	return func() { once.Do(mu.Unlock) }, true, nil
}

// TryLease is TryLeadership with a context that is cancelled at release:
// the lock lives in this process, so the lease cannot be lost otherwise.
func (s *Store) TryLease(ctx context.Context, name string) (context.Context, func(), bool, error) {
	release, ok, err := s.TryLeadership(ctx, name)
	if !ok || err != nil {
		return nil, release, ok, err
	}
	lctx, cancel := context.WithCancel(ctx)
	return lctx, func() { cancel(); release() }, true, nil
}
