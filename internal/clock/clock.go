// Package clock exists so that every piece of the CA that reads time (token
// checks, certificate lifetimes, CRL windows, rotation) takes it from an injected
// Clock, and tests move time without sleeping.
package clock

import (
	"context"
	"sync"
	"time"
)

// Clock tells the current time. Production code uses Real; tests use *Fake.
type Clock interface {
	Now() time.Time
}

// Real is the wall clock, in UTC.
type Real struct{}

// Now returns the current wall-clock time in UTC.
func (Real) Now() time.Time { return time.Now().UTC() }

// Fake is a manually driven clock, safe for concurrent use. The zero value is
// not useful; build one with NewFake.
type Fake struct {
	mu  sync.Mutex
	now time.Time
}

// NewFake returns a Fake clock that reads t until it is moved.
func NewFake(t time.Time) *Fake { return &Fake{now: t.UTC()} }

// Now returns the fake's current time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the fake forward by d (or back, if d is negative).
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// Set moves the fake to t.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t.UTC()
}

// Sleep waits d of real time or until ctx ends, whichever is first, and
// returns ctx's error in the second case (nil after a full wait; at once for
// d <= 0 unless ctx has ended). It is for spacing real work (retries,
// backoffs, batches), not for reading time: that goes through a Clock.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
