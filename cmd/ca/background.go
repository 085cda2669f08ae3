package main

import (
	"context"
	"sync"
)

// background is the group of goroutines `ca serve` runs beside its listeners
// (rotation, JWT keys, the revocation publisher, policy reloads, the server
// certificate's renewal, retention, checkpoints). They use the store and the
// key store, so shutdown stops them and waits for them (stop) before it
// closes either: none can touch a closed store or HSM session.
type background struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newBackground returns a group whose goroutines run under a context derived
// from ctx: they stop when ctx ends or at stop, whichever is first.
func newBackground(ctx context.Context) *background {
	c, cancel := context.WithCancel(ctx)
	return &background{ctx: c, cancel: cancel}
}

// Go runs f in the group; f must return soon after its context is done.
func (g *background) Go(f func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f(g.ctx)
	}()
}

// stop cancels the group's context and returns once every goroutine started
// with Go has returned. It may be called more than once.
func (g *background) stop() {
	g.cancel()
	g.wg.Wait()
}
