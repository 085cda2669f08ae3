package hsm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"
)

// DefaultWorkers is the size of a Workers pool when none is given.
const DefaultWorkers = 8

// Workers runs calls that cannot be cancelled, PKCS#11 calls above all, on
// a bounded set of goroutines, each call with a deadline. A network HSM
// behind a partition neither answers nor fails: a goroutine per call would
// pile up for as long as the partition lasts, and callers would wait with
// them. With Workers a caller waits at most until its deadline (its
// context's, or the pool's per-call timeout, whichever comes first) and then
// gets ErrUnavailable; the call itself keeps its worker until it returns, so
// at most Size calls are ever in flight, hung ones included, and a hung call
// is never retried concurrently beyond that. Calls abandoned by their caller
// are counted (Stuck) and logged when abandoned and when they return.
type Workers struct {
	slots   chan struct{}
	log     *slog.Logger
	stuck   atomic.Int64
	running atomic.Int64
}

// NewWorkers makes a pool of n workers (DefaultWorkers if n <= 0).
func NewWorkers(n int, log *slog.Logger) *Workers {
	if n <= 0 {
		n = DefaultWorkers
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Workers{slots: make(chan struct{}, n), log: log}
}

// Size is the number of workers.
func (w *Workers) Size() int { return cap(w.slots) }

// Running is the number of calls in flight, abandoned ones included.
func (w *Workers) Running() int { return int(w.running.Load()) }

// Stuck is the number of calls still running whose caller gave up on them.
func (w *Workers) Stuck() int { return int(w.stuck.Load()) }

// Do runs fn on a free worker and returns its error. It fails with an error
// wrapping ErrUnavailable when no worker is free before the deadline (every
// one is busy, typically with calls to a token that does not answer), or
// when fn has not returned by the deadline; in the second case fn goes on
// running on its worker and its result is discarded. The deadline is
// ctx's or timeout from now (if timeout > 0), whichever is earlier.
func (w *Workers) Do(ctx context.Context, timeout time.Duration, fn func() error) error {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case w.slots <- struct{}{}:
	case <-expired:
		return fmt.Errorf("%w: %w: all %d busy for %s (%d calls stuck)", ErrUnavailable, errNoWorker, w.Size(), timeout, w.Stuck())
	case <-ctx.Done():
		return fmt.Errorf("%w: %w: all %d busy (%d calls stuck): %w", ErrUnavailable, errNoWorker, w.Size(), w.Stuck(), ctx.Err())
	}
	w.running.Add(1)
	done := make(chan error, 1)
	// state settles the race between the call returning and its caller
	// giving up: whoever moves it from callRunning first decides.
	var state atomic.Int32
	start := time.Now()
	go func() {
		defer func() { <-w.slots }()
		err := fn()
		w.running.Add(-1)
		done <- err
		if !state.CompareAndSwap(callRunning, callReturned) {
			n := w.stuck.Add(-1)
			w.log.Warn("an abandoned PKCS#11 call returned", "after", time.Since(start).Round(time.Millisecond), "still_stuck", n)
		}
	}()
	var cause error
	select {
	case err := <-done:
		return err
	case <-expired:
		cause = fmt.Errorf("still running after %s", timeout)
	case <-ctx.Done():
		cause = ctx.Err()
	}
	n := w.stuck.Add(1) // before the swap, so that the call's -1 comes after it
	if !state.CompareAndSwap(callRunning, callAbandoned) {
		w.stuck.Add(-1)
		return <-done // it returned just now: its result stands
	}
	w.log.Warn("PKCS#11 call abandoned at its deadline; it keeps its worker until it returns",
		"stuck", n, "workers", w.Size(), "cause", cause)
	return fmt.Errorf("%w: %w: %w", ErrUnavailable, errCallAbandoned, cause)
}

// Failures of Workers.Do that are the pool's, not the call's; both wrap
// ErrUnavailable too.
var (
	errNoWorker      = errors.New("no free PKCS#11 worker")
	errCallAbandoned = errors.New("PKCS#11 call did not return in time")
)

// States of one Workers call.
const (
	callRunning int32 = iota
	callReturned
	callAbandoned
)

// ContextSigner is a crypto.Signer whose signing can be bounded by a
// context. The PKCS#11 store's signers and Workers.Signer's are.
type ContextSigner interface {
	crypto.Signer
	SignContext(ctx context.Context, rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// WithContext returns a crypto.Signer whose Sign is bounded by ctx when s
// is a ContextSigner, for APIs such as crypto/x509 that call Sign without a
// context; other signers (in-process software keys) are returned as they
// are.
func WithContext(ctx context.Context, s crypto.Signer) crypto.Signer {
	cs, ok := s.(ContextSigner)
	if !ok {
		return s
	}
	return boundSigner{ctx: ctx, s: cs}
}

type boundSigner struct {
	ctx context.Context
	s   ContextSigner
}

func (b boundSigner) Public() crypto.PublicKey { return b.s.Public() }

func (b boundSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return b.s.SignContext(b.ctx, rand, digest, opts)
}

// Signer wraps s so that each signature runs on one of w's workers, bounded
// by timeout (if > 0) and by the context SignContext is given: for a
// crypto.Signer whose Sign may hang (a remote signer, or a test's signer
// that blocks on purpose).
func (w *Workers) Signer(s crypto.Signer, timeout time.Duration) ContextSigner {
	return workerSigner{w: w, s: s, timeout: timeout}
}

type workerSigner struct {
	w       *Workers
	s       crypto.Signer
	timeout time.Duration
}

func (ws workerSigner) Public() crypto.PublicKey { return ws.s.Public() }

func (ws workerSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return ws.SignContext(context.Background(), rand, digest, opts)
}

func (ws workerSigner) SignContext(ctx context.Context, rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := ws.w.Do(ctx, ws.timeout, func() error {
		var err error
		sig, err = ws.s.Sign(rand, digest, opts)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: sign: %w", err)
	}
	return sig, nil
}
