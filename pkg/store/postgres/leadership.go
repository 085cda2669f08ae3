package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"
)

// LeadershipLockClass is the first key of the two-key advisory locks that
// TryLeadership takes; the second is a hash of the leadership's name.
// Postgres keeps two-key and one-key (AuditLockKey) advisory locks in
// separate key spaces, so they never collide.
const LeadershipLockClass int32 = 0x77636100 // "wca\x00"

// unlockTimeout bounds the unlock at release, which runs even when the
// caller's context is gone.
const unlockTimeout = 5 * time.Second

// TryLeadership takes a session-level advisory lock on a connection taken
// out of the pool for as long as leadership is held. If the process dies or
// its connection breaks, Postgres releases the lock and another replica gets
// it on its next try. release unlocks and returns the connection; if the
// unlock fails the connection is closed instead, which releases the lock too.
func (s *Store) TryLeadership(ctx context.Context, name string) (func(), bool, error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	key := int32(h.Sum32())
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: leadership %q: %w", name, mapErr(err))
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, LeadershipLockClass, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("postgres: leadership %q: %w", name, mapErr(err))
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	var once sync.Once
	var release func()
	release = func() {
		once.Do(func() {
			s.held.Delete(&release)
			uctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
			defer cancel()
			var unlocked bool
			err := conn.QueryRow(uctx, `SELECT pg_advisory_unlock($1, $2)`, LeadershipLockClass, key).Scan(&unlocked)
			if err != nil || !unlocked {
				// Do not return a connection that may still hold the lock.
				_ = conn.Hijack().Close(uctx)
				return
			}
			conn.Release()
		})
	}
	s.held.Store(&release, release)
	return release, true, nil
}

// releaseAll gives up every leadership still held, so that Close (which
// waits for every connection to return to the pool) cannot hang on one.
func (s *Store) releaseAll() {
	s.held.Range(func(_, v any) bool {
		v.(func())()
		return true
	})
}
