package postgres

import (
	"context"
	"errors"
	"sync"
)

// grouper is the queue both group writers share (groupcommit.go for
// issuances, markgroup.go for replay marks): calls that arrive while a group
// is being written wait, and the next group takes them all, up to maxGroup,
// so a burst costs one transaction instead of one each. One goroutine per
// grouper writes the groups, one at a time.
type grouper[R any] struct {
	queue   chan R // unbuffered: a send succeeds only when the writer takes it
	quit    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// newGrouper starts the goroutine that hands each group to write.
func newGrouper[R any](write func(group []R)) *grouper[R] {
	g := &grouper[R]{queue: make(chan R), quit: make(chan struct{}), stopped: make(chan struct{})}
	go g.run(write)
	return g
}

// submit queues r: nil once the writer took it, errGrouperClosed after
// stop, or ctx's error if it ended first.
func (g *grouper[R]) submit(ctx context.Context, r R) error {
	select {
	case g.queue <- r:
		return nil
	case <-g.quit:
		return errGrouperClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errGrouperClosed is submit's answer after stop.
var errGrouperClosed = errors.New("store closed")

// stop ends the writer after its current group.
func (g *grouper[R]) stop() {
	g.once.Do(func() { close(g.quit) })
	<-g.stopped
}

func (g *grouper[R]) run(write func([]R)) {
	defer close(g.stopped)
	for {
		var first R
		select {
		case first = <-g.queue:
		case <-g.quit:
			return
		}
		group := []R{first}
	fill:
		for len(group) < maxGroup {
			select {
			case r := <-g.queue:
				group = append(group, r)
			default:
				break fill
			}
		}
		write(group)
	}
}
