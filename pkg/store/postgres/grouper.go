package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/workload-ca/workload-ca/pkg/store"
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

// await queues r and waits for its answer on done (what names the call in
// errors): done's value, or the error of a call that got no answer, after
// stop (store.ErrUnavailable) or once ctx ended (gaveUp). A call that gave
// up while its group was in flight may still have been written.
func await[R, A any](ctx context.Context, g *grouper[R], r R, done <-chan A, what string) (A, error) {
	var zero A
	if err := g.submit(ctx, r); err != nil {
		if errors.Is(err, errGrouperClosed) {
			return zero, fmt.Errorf("postgres: %s: store closed: %w", what, store.ErrUnavailable)
		}
		return zero, gaveUp(ctx, what)
	}
	select {
	case a := <-done:
		return a, nil
	case <-ctx.Done():
		return zero, gaveUp(ctx, what)
	}
}

// gaveUp is the error of a call whose context ended before its group
// answered it: past a deadline, the database did not answer in time
// (store.ErrUnavailable); cancelled, the caller went away.
func gaveUp(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("postgres: %s: %w: %w", what, store.ErrUnavailable, ctx.Err())
	}
	return fmt.Errorf("postgres: %s: %w", what, ctx.Err())
}

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
