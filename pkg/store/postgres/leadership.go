package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// LeadershipLockClass is the first key of the two-key advisory locks that
// TryLeadership takes; the second is a hash of the leadership's name.
// Postgres keeps two-key and one-key (AuditLockKey) advisory locks in
// separate key spaces, so they never collide.
const LeadershipLockClass int32 = 0x77636100 // "wca\x00"

// unlockTimeout bounds the unlock at release, which runs even when the
// caller's context is gone.
const unlockTimeout = 5 * time.Second

// Leadership is a lease with bounded staleness (issue 18). The holder
// pings the session that holds the advisory lock every leasePingInterval,
// each ping bounded by leasePingTimeout; the first ping that fails or
// takes longer ends the lease: its context is cancelled and the session is
// closed. So a leader cut off from Postgres stops acting as leader at most
// leasePingInterval+leasePingTimeout (4 s) after the cut.
//
// Postgres frees the lock when it notices the session is gone: the lock's
// session sets tighter server-side TCP bounds than the pool's other
// sessions (bounds.go): keepalive probes from leaseKeepaliveIdle after the
// last packet, every leaseKeepaliveInterval, and TCP_USER_TIMEOUT
// leaseUserTimeout for data left unacknowledged. The lease's pings keep
// the session busy at least every 2 s, so the server ends a partitioned
// leader's session about 10-12 s after the cut, and another replica takes
// leadership on its next try after that (the publisher tries every tick,
// 5 s by default): under 20 s in all. The old holder stopped acting at
// least 5 s before the lock could be taken over; and whatever a leader
// writes is fenced by the database anyway (CRL numbers come from a
// sequence and PutCRL refuses one not greater than the stored one).
const (
	leasePingInterval      = 2 * time.Second
	leasePingTimeout       = 2 * time.Second
	leaseKeepaliveIdle     = 4 * time.Second
	leaseKeepaliveInterval = 2 * time.Second
	leaseKeepaliveCount    = 3
	leaseUserTimeout       = 8 * time.Second
)

// leaseSessionSettings are the session settings of a lock's session, set
// in the same round trip that tries the lock and reset at release.
var leaseSessionSettings = [][2]string{
	{"tcp_keepalives_idle", strconv.Itoa(int(leaseKeepaliveIdle / time.Second))},
	{"tcp_keepalives_interval", strconv.Itoa(int(leaseKeepaliveInterval / time.Second))},
	{"tcp_keepalives_count", strconv.Itoa(leaseKeepaliveCount)},
	{"tcp_user_timeout", strconv.FormatInt(leaseUserTimeout.Milliseconds(), 10)},
}

// TryLeadership is TryLease without the lease's context: the holder
// cannot learn that it lost leadership. Prefer TryLease.
func (s *Store) TryLeadership(ctx context.Context, name string) (func(), bool, error) {
	_, release, ok, err := s.TryLease(ctx, name)
	return release, ok, err
}

// TryLease takes a session-level advisory lock on a connection taken out
// of the pool for as long as leadership is held, and watches that session
// (see leasePingInterval). The returned context, derived from ctx, is
// cancelled when the lease ends: at release, or when the session stops
// answering within leasePingTimeout; the holder does its work under it.
// If the process dies or its connection breaks, Postgres releases the lock
// and another replica gets it on its next try. release unlocks and returns
// the connection; if the unlock fails the connection is closed instead,
// which releases the lock too.
func (s *Store) TryLease(ctx context.Context, name string) (context.Context, func(), bool, error) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	key := int32(h.Sum32())
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, false, fmt.Errorf("postgres: leadership %q: %w", name, mapErr(err))
	}
	var ok bool
	q := `SELECT `
	for _, kv := range leaseSessionSettings {
		q += fmt.Sprintf("set_config('%s', '%s', false) IS NOT NULL AND ", kv[0], kv[1])
	}
	q += `pg_try_advisory_lock($1, $2)`
	if err := conn.QueryRow(ctx, q, LeadershipLockClass, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, nil, false, fmt.Errorf("postgres: leadership %q: %w", name, mapErr(err))
	}
	if !ok {
		resetLeaseSettings(ctx, conn)
		return nil, nil, false, nil
	}
	lctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	var (
		once    sync.Once
		release func()
		mu      sync.Mutex // the connection: the watcher's pings, then the release
		stop    = make(chan struct{})
		done    = make(chan struct{})
	)
	lost := false
	release = func() {
		once.Do(func() {
			s.held.Delete(&release)
			close(stop)
			<-done
			cancel()
			mu.Lock()
			defer mu.Unlock()
			if lost {
				return // the watcher closed the session
			}
			uctx, ucancel := context.WithTimeout(context.Background(), unlockTimeout)
			defer ucancel()
			var unlocked bool
			err := conn.QueryRow(uctx, `SELECT pg_advisory_unlock($1, $2)`, LeadershipLockClass, key).Scan(&unlocked)
			if err != nil || !unlocked {
				// Do not return a connection that may still hold the lock.
				_ = conn.Hijack().Close(uctx)
				return
			}
			resetLeaseSettings(uctx, conn)
		})
	}
	go func() {
		defer close(done)
		t := time.NewTicker(leasePingInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-lctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(context.Background(), leasePingTimeout)
			mu.Lock()
			err := conn.Ping(pctx)
			if err != nil {
				lost = true
				cancelCause(fmt.Errorf("%w: leadership %q: session ping: %w", store.ErrLeaseLost, name, mapErr(err)))
				_ = conn.Hijack().Close(pctx)
			}
			mu.Unlock()
			pcancel()
			if err != nil {
				return
			}
		}
	}()
	s.held.Store(&release, release)
	return lctx, release, true, nil
}

// resetLeaseSettings gives the pool back a connection with the pool's own
// session bounds; a connection it cannot reset is closed instead.
func resetLeaseSettings(ctx context.Context, conn *pgxpool.Conn) {
	q := ""
	for _, kv := range leaseSessionSettings {
		q += "RESET " + kv[0] + "; "
	}
	if _, err := conn.Exec(ctx, q); err != nil {
		_ = conn.Hijack().Close(ctx)
		return
	}
	conn.Release()
}

// releaseAll gives up every leadership still held, so that Close (which
// waits for every connection to return to the pool) cannot hang on one.
func (s *Store) releaseAll() {
	s.held.Range(func(_, v any) bool {
		v.(func())()
		return true
	})
}
