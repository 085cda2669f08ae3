package hold

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Recheck's grouped reads (issue 20). The check after an enrollment's or a
// renewal's certificate is recorded must read the holds as they are after that record
// committed: a hold that committed before is seen, one that commits after
// revokes the certificate itself. It need not be a read of its own: any
// read of the holds in force that starts after the caller asked answers it.
// So concurrent Rechecks share reads, as the stores' group commits share
// transactions: while one listing of the holds in force is in flight,
// callers that arrive wait for the next one, which starts when it returns
// and serves them all. A caller is never answered from a listing that
// started before it asked. One listing per group instead of one point read
// per enrollment: at 16 concurrent enrollments, about a round trip to the
// store less per enrollment. A caller whose context ends while it waits
// gets its context's error (a deadline answers 503 store_unavailable).

// recheckTimeout bounds one grouped listing; it belongs to no caller (a
// caller that gives up must not fail the others' read), and each caller
// still waits only until its own context ends.
const recheckTimeout = 10 * time.Second

// recheckPointReads: when the last listing held more holds in force than
// this, Recheck reads its identity alone (Check) for the next
// PrecheckMaxAge: a point read is cheaper than listing many holds for one
// caller. Then it lists again, to see whether they are still that many.
const recheckPointReads = 64

// listing is one grouped read: its callers wait on done, then read the rest.
type listing struct {
	done     chan struct{}
	held     map[string]store.Hold // byIdentity of the listing
	complete bool                  // read, and fewer than precheckLimit holds in force
}

// rechecks is the grouping state of one Holds.
type rechecks struct {
	mu      sync.Mutex
	running bool     // a listing is in flight
	next    *listing // the callers that arrived meanwhile, served by the next listing
	// pointUntil: until then Recheck reads point by point (the last
	// listing held more than recheckPointReads holds).
	pointUntil time.Time
}

// Recheck is Check for the check after an issuance was recorded and before
// it is returned: the same answer, from a read that started after the call
// (shared with concurrent callers; see above).
func (h *Holds) Recheck(ctx context.Context, spiffeID string) error {
	if h == nil {
		return nil
	}
	rc := &h.rc
	rc.mu.Lock()
	if h.clock.Now().Before(rc.pointUntil) {
		rc.mu.Unlock()
		return h.Check(ctx, spiffeID)
	}
	var l *listing
	if !rc.running {
		rc.running = true
		l = &listing{done: make(chan struct{})}
		go h.list(l)
	} else {
		if rc.next == nil {
			rc.next = &listing{done: make(chan struct{})}
		}
		l = rc.next
	}
	rc.mu.Unlock()

	select {
	case <-l.done:
	case <-ctx.Done():
		return fmt.Errorf("hold: checking %s: %w", spiffeID, ctx.Err())
	}
	if !l.complete { // the listing failed, or holds too many: read this identity alone
		return h.Check(ctx, spiffeID)
	}
	hd, held := l.held[spiffeID]
	if !held {
		return nil
	}
	h.refused.Inc()
	return &OnHoldError{SPIFFEID: spiffeID, Until: hd.Until, Reason: hd.Reason}
}

// list reads the holds in force into l, wakes its callers, then starts the
// listing of those who arrived meanwhile, if any. A listing that fails
// leaves its callers to read their own identity (Check); a store that
// panics does the same, without taking the process down (no request
// goroutine is here for net/http to recover).
func (h *Holds) list(l *listing) {
	defer func() {
		if recover() == nil {
			return
		}
		rc := &h.rc
		rc.mu.Lock()
		next := rc.next
		rc.next, rc.running = nil, false
		rc.mu.Unlock()
		for _, w := range []*listing{l, next} {
			if w != nil {
				close(w.done) // not complete: its callers read alone
			}
		}
		h.log.Error("listing the holds in force panicked; the rechecks waiting for it read the store one by one")
	}()
	for l != nil {
		ctx, cancel := context.WithTimeout(context.Background(), recheckTimeout)
		list, err := h.st.ActiveHolds(ctx, h.clock.Now(), precheckLimit)
		cancel()
		if err == nil && len(list) < precheckLimit {
			l.complete, l.held = true, byIdentity(list)
		}
		rc := &h.rc
		rc.mu.Lock()
		if err == nil && len(list) > recheckPointReads {
			// Before the callers wake: their next Recheck reads point by point.
			rc.pointUntil = h.clock.Now().Add(PrecheckMaxAge)
		}
		close(l.done)
		l, rc.next = rc.next, nil
		if l == nil {
			rc.running = false
		}
		rc.mu.Unlock()
	}
}
