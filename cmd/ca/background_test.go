package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// closable stands for the store or the key store: a use after Close is
// recorded as the defect it would be.
type closable struct {
	mu      sync.Mutex
	closed  bool
	uses    int
	misused atomic.Bool
}

func (c *closable) use() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		c.misused.Store(true)
	}
	c.uses++
}

func (c *closable) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
}

func TestStopWaitsForEveryGoroutineBeforeTheStoreCloses(t *testing.T) {
	res := &closable{}
	g := newBackground(context.Background())
	var finished atomic.Int32
	started := make(chan struct{}, 3)
	for range 3 {
		g.Go(func(ctx context.Context) {
			started <- struct{}{}
			<-ctx.Done()
			// Work after the cancellation, as a publisher finishing its
			// tick or a rotation step writing its audit entry would.
			for range 100 {
				res.use()
			}
			finished.Add(1)
		})
	}
	for range 3 {
		<-started
	}
	g.stop()
	if n := finished.Load(); n != 3 {
		t.Fatalf("stop returned with %d of 3 goroutines finished", n)
	}
	res.Close()
	if res.misused.Load() {
		t.Fatal("a goroutine used the store after it was closed")
	}
	if res.uses != 300 {
		t.Fatalf("uses = %d, want 300", res.uses)
	}
	g.stop() // a second stop is harmless
}

func TestTheGroupStopsWhenItsParentContextEnds(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	g := newBackground(parent)
	got := make(chan error, 1)
	g.Go(func(ctx context.Context) {
		<-ctx.Done()
		got <- ctx.Err()
	})
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("the goroutine's context ended with %v", err)
	}
	g.stop()
}
