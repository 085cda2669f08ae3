package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Token replay marks without the committer (issue 20). MarkTokenUsed
// answers from memory and one read, and the mark is written by the next
// group transaction, the one that records the certificate it let through
// or an earlier one. The guarantees, and why they hold:
//
//   - Exactly one of several uses of a token is answered "not used". A use
//     first reserves the key in unsettled (under mu: a second reservation of
//     a reserved key is refused), then reads used_tokens. A key leaves
//     unsettled only after the transaction that wrote it committed, so a
//     use that reserves it afterwards reads the committed row and is
//     refused; one that comes before finds the reservation.
//   - The mark is durable no later than any certificate of its token: it is
//     queued before MarkTokenUsed returns, so before the enrollment records
//     anything, and every group writes all queued marks first, in its own
//     transaction. A group that fails leaves them queued for the next one.
//   - A mark whose enrollment records nothing (a denial after the mark, a
//     caller gone) is written by the next group anyway, or, when no write
//     comes for markFlushAfter, by a group of its own. If the process dies
//     before, the token is as unused as the database says, and no
//     certificate of it was recorded or answered: it can still get one
//     certificate, never two.
//
// Only this process writes the file (the embedded default is one server;
// other writers such as `ca migrate` take the write lock, not these rows),
// which is what lets memory stand for the marks not yet committed.

// markFlushAfter is how long a queued mark waits for a group before it gets
// one of its own. Under load every few milliseconds brings a group; idle, a
// denied token's mark is on disk within this.
const markFlushAfter = 50 * time.Millisecond

// selectTokenSQL reads a token's mark.
const selectTokenSQL = `SELECT expires_at FROM used_tokens WHERE key = ?`

// tokenMark is one MarkTokenUsed answered "not used".
type tokenMark struct {
	key            string
	expiresAt, now time.Time
	queuedAt       time.Time
}

// markSet holds the marks answered "not used" and not yet committed.
type markSet struct {
	mu sync.Mutex
	// unsettled: every mark answered or being decided, by key, until a
	// committed transaction holds it.
	unsettled map[string]*tokenMark
	// queued: the answered marks no group has committed yet, oldest first.
	queued []*tokenMark
	// timer wakes the committer (flush) for marks that waited too long.
	timer *time.Timer
	flush chan<- struct{}
}

func newMarkSet(flush chan<- struct{}) *markSet {
	return &markSet{unsettled: map[string]*tokenMark{}, flush: flush}
}

// MarkTokenUsed records a used enrollment token until expiresAt;
// store.ErrConflict if it is already recorded and unexpired at now. A
// recorded mark that expired at or before now is replaced. It returns
// without waiting for a write: see above.
func (s *Store) MarkTokenUsed(ctx context.Context, key string, expiresAt, now time.Time) error {
	if s.gc == nil { // read-only store: a plain transaction (SQLite refuses the write)
		return s.inTx(ctx, func(tx *sql.Tx) error { return s.markWrite(key, expiresAt, now)(ctx, tx) })
	}
	m := &tokenMark{key: key, expiresAt: expiresAt, now: now}
	if err := s.marks.reserve(m); err != nil {
		return err
	}
	var exp int64
	err := s.readRow(ctx, selectTokenSQL, key).Scan(&exp)
	switch {
	case errors.Is(err, sql.ErrNoRows), err == nil && exp <= now.UnixMicro():
	case err == nil:
		s.marks.release(m)
		return fmt.Errorf("sqlite: token already used: %w", store.ErrConflict)
	default:
		s.marks.release(m)
		return fmt.Errorf("sqlite: mark token used: %w", mapErr(err))
	}
	if !s.marks.queue(m, time.Now()) {
		return fmt.Errorf("sqlite: mark token used: store closed: %w", store.ErrUnavailable)
	}
	return nil
}

// reserve adds m to unsettled unless its key is there and unexpired
// (store.ErrConflict) or the store is closed (store.ErrUnavailable).
func (ms *markSet) reserve(m *tokenMark) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.unsettled == nil {
		return fmt.Errorf("sqlite: mark token used: store closed: %w", store.ErrUnavailable)
	}
	if prev, ok := ms.unsettled[m.key]; ok && prev.expiresAt.After(m.now) {
		return fmt.Errorf("sqlite: token already used: %w", store.ErrConflict)
	}
	ms.unsettled[m.key] = m
	return nil
}

// release drops m's reservation (refused by the read, or the read failed).
func (ms *markSet) release(m *tokenMark) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.unsettled[m.key] == m {
		delete(ms.unsettled, m.key)
	}
}

// queue hands m to the next group and arms the flush timer; false once the
// store is closed.
func (ms *markSet) queue(m *tokenMark, now time.Time) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.unsettled == nil {
		return false
	}
	m.queuedAt = now
	ms.queued = append(ms.queued, m)
	if ms.timer == nil {
		ms.timer = time.AfterFunc(markFlushAfter, ms.wake)
	}
	return true
}

// wake tells the committer that marks may be due, and arms the timer again
// for when the oldest queued mark will be (a group may have taken the mark
// the timer was armed for, and a younger one be the oldest now).
func (ms *markSet) wake() {
	ms.mu.Lock()
	ms.timer = nil
	if len(ms.queued) > 0 {
		next := markFlushAfter
		if left := markFlushAfter - time.Since(ms.queued[0].queuedAt); left > 0 {
			next = left
		}
		ms.timer = time.AfterFunc(next, ms.wake)
	}
	ms.mu.Unlock()
	select {
	case ms.flush <- struct{}{}:
	default:
	}
}

// due reports whether the oldest queued mark has waited markFlushAfter.
func (ms *markSet) due(now time.Time) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.queued) > 0 && now.Sub(ms.queued[0].queuedAt) >= markFlushAfter
}

// waiting reports whether marks are queued.
func (ms *markSet) waiting() bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.queued) > 0
}

// take hands the queued marks to a group. Only the committer calls it, one
// group at a time.
func (ms *markSet) take() []*tokenMark {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	q := ms.queued
	ms.queued = nil
	return q
}

// settle ends a group's marks: committed, they leave unsettled; otherwise
// they go back to the head of the queue for the next group.
func (ms *markSet) settle(marks []*tokenMark, committed bool) {
	if len(marks) == 0 {
		return
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if !committed {
		ms.queued = append(marks, ms.queued...)
		return
	}
	for _, m := range marks {
		if ms.unsettled[m.key] == m {
			delete(ms.unsettled, m.key)
		}
	}
}

// close refuses new marks; the committer writes the queued ones before it
// stops.
func (ms *markSet) close() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.timer != nil {
		ms.timer.Stop()
		ms.timer = nil
	}
	ms.unsettled = nil
}
