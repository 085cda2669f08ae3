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
