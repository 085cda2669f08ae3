//go:build cgo

package hsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"
)

// p11Conn is one crypto11 context: a module reference, a logged-in session
// and a session pool. A context that saw the token fail is never used again;
// the store builds a new one, with a higher generation.
type p11Conn struct {
	ctx       *crypto11.Context
	module    string
	gen       uint64
	closeOnce sync.Once
}

// newConn wraps a context whose module use runReconnect already counted.
func newConn(cx *crypto11.Context, module string, gen uint64) *p11Conn {
	return &p11Conn{ctx: cx, module: module, gen: gen}
}

// close closes the crypto11 context once. It blocks until operations using
// the context have returned their sessions.
func (c *p11Conn) close() {
	c.closeOnce.Do(func() {
		_ = c.ctx.Close()
		moduleUse(c.module, -1)
	})
}

// reconnectAttempt is one run of runReconnect; callers wait on done.
type reconnectAttempt struct {
	done chan struct{}
	conn *p11Conn
	err  error
}

// connection returns the current context. While the token is unavailable it
// starts a reconnect attempt if the backoff allows one (or joins the attempt
// in flight) and waits for it at most ReconnectTimeout and until ctx ends;
// otherwise it fails at once. Every failure wraps ErrUnavailable, or is
// ErrClosed.
func (s *PKCS11Store) connection(ctx context.Context) (*p11Conn, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if s.conn != nil {
		c := s.conn
		s.mu.Unlock()
		return c, nil
	}
	if s.pinRefused != nil {
		refused := s.pinRefused
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: token %q: no login is attempted until a reload or restart (last refusal: %w)",
			ErrPINRefused, s.cfg.TokenLabel, refused)
	}
	a := s.attempt
	if a == nil {
		if now := s.clk.Now(); now.Before(s.nextAttempt) {
			last := s.lastErr
			wait := s.nextAttempt.Sub(now)
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: token %q is down, next reconnect in %s (last error: %w)",
				ErrUnavailable, s.cfg.TokenLabel, wait.Round(time.Millisecond), last)
		}
		a = &reconnectAttempt{done: make(chan struct{})}
		s.attempt = a
		go s.runReconnect(a)
	}
	s.mu.Unlock()

	t := time.NewTimer(s.cfg.ReconnectTimeout)
	defer t.Stop()
	select {
	case <-a.done:
		if a.err != nil {
			if isLoginRefused(a.err) {
				return nil, fmt.Errorf("%w: token %q: %w", ErrPINRefused, s.cfg.TokenLabel, a.err)
			}
			if errors.Is(a.err, ErrClosed) {
				return nil, a.err
			}
			return nil, fmt.Errorf("%w: connect to token %q: %w", ErrUnavailable, s.cfg.TokenLabel, a.err)
		}
		return a.conn, nil
	case <-t.C:
		return nil, fmt.Errorf("%w: connect to token %q: still running after %s",
			ErrUnavailable, s.cfg.TokenLabel, s.cfg.ReconnectTimeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: connect to token %q: %w", ErrUnavailable, s.cfg.TokenLabel, ctx.Err())
	}
}

// runReconnect closes the broken contexts (so that, as the module's last user,
// crypto11 finalizes it and the next Configure re-initialises it and rescans
// the tokens), then configures a fresh context and logs in. It runs in its own
// goroutine so that a hanging module cannot hang callers.
func (s *PKCS11Store) runReconnect(a *reconnectAttempt) {
	s.mu.Lock()
	retiring := s.retiring
	s.retiring = nil
	s.mu.Unlock()
	for _, c := range retiring {
		c.close()
	}

	s.mu.Lock()
	s.logins++
	s.mu.Unlock()
	// The module counts as in use from before Configure initialises it
	// (ModuleInUse): counted only once Configure returned, a token created
	// by another goroutine meanwhile (a test fixture topping up its pool)
	// was invisible to the module for as long as it stayed initialised.
	moduleUse(s.cfg.Module, +1)
	cx, err := crypto11.Configure(&crypto11.Config{
		Path:            s.cfg.Module,
		TokenLabel:      s.cfg.TokenLabel,
		Pin:             s.cfg.PIN,
		MaxSessions:     s.cfg.MaxSessions,
		PoolWaitTimeout: s.cfg.OpTimeout,
	})
	if err != nil {
		moduleUse(s.cfg.Module, -1)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(a.done)
	s.attempt = nil
	if err == nil && s.closed {
		go newConn(cx, s.cfg.Module, 0).close()
		err = ErrClosed
	}
	if err != nil {
		s.failures++
		s.nextAttempt = s.clk.Now().Add(s.backoff(s.failures))
		s.lastErr = err
		a.err = err
		if isLoginRefused(err) {
			// Another attempt with the same PIN could lock the token for
			// every replica sharing it: latch until ReloadLogin. Logged
			// once per refusal, so once per reload.
			s.pinRefused = err
			s.log.Error("PKCS#11 token refused the PIN; no further login attempts until the key store is reloaded (SIGHUP) or the process restarts",
				"error", err)
			return
		}
		if !errors.Is(err, ErrClosed) {
			s.log.Warn("PKCS#11 token unavailable; reconnect failed",
				"failures", s.failures, "retry_after", s.backoff(s.failures), "error", err)
		}
		return
	}
	s.gen++
	s.conn = newConn(cx, s.cfg.Module, s.gen)
	if s.gen > 1 {
		s.log.Info("PKCS#11 token reconnected", "after_failures", s.failures, "generation", s.gen)
	}
	s.failures = 0
	s.lastErr = nil
	a.conn = s.conn
}

// backoff is the wait after the n-th consecutive failed reconnect: MinBackoff
// doubling up to MaxBackoff.
func (s *PKCS11Store) backoff(n int) time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < n && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

// markBroken retires c after it failed with cause. The first reconnect
// attempt may run on the next call; later ones follow the backoff.
func (s *PKCS11Store) markBroken(c *p11Conn, cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != c {
		return // already retired by a concurrent failure
	}
	s.conn = nil
	s.retiring = append(s.retiring, c)
	s.lastErr = cause
	if s.failures == 0 {
		s.nextAttempt = time.Time{}
	}
	s.log.Warn("PKCS#11 token failed; signing is unavailable until it reconnects", "error", cause)
}

// do runs fn against context c on one of the store's workers (workers.go)
// and waits for it at most timeout (if > 0) and until ctx ends. Errors that
// mean the token, module, session or login is gone retire c and come back
// wrapping ErrUnavailable, as do timeouts and a pool whose every worker is
// held by calls that have not returned; other errors come back unchanged.
func (s *PKCS11Store) do(ctx context.Context, c *p11Conn, timeout time.Duration, fn func(*crypto11.Context) error) error {
	err := s.workers.Do(ctx, timeout, func() error { return fn(c.ctx) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNoWorker):
		return err // wraps ErrUnavailable
	case errors.Is(err, errCallAbandoned):
		if ctx.Err() == nil {
			// The call outlived its own timeout: the token hangs.
			s.markBroken(c, fmt.Errorf("operation still running after %s", timeout))
		}
		return err // wraps ErrUnavailable
	case isConnectionLost(err):
		s.markBroken(c, err)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case isPoolTimeout(err):
		return fmt.Errorf("%w: no free PKCS#11 session: %w", ErrUnavailable, err)
	case isRefused(err):
		// The token refused the request itself (template, mechanism, key
		// size): a configuration error, no reconnect.
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	s.mu.Lock()
	retired := s.conn != c
	s.mu.Unlock()
	if retired {
		// The context was closed under this call by a reconnect or Close.
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// ReloadLogin is the explicit reload after the token refused the PIN: it
// clears the refusal (and the reconnect backoff), so that the next call makes
// exactly one new login attempt. It does nothing while the store is connected
// or when no refusal is recorded, and reports whether it cleared one.
func (s *PKCS11Store) ReloadLogin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pinRefused == nil {
		return false
	}
	s.pinRefused = nil
	s.failures = 0
	s.nextAttempt = time.Time{}
	s.log.Info("PKCS#11 login refusal cleared by a reload; the next use logs in once")
	return true
}

// PINRefused reports whether the token refused the PIN and no reload has
// cleared the refusal yet; while it is true the store attempts no login.
func (s *PKCS11Store) PINRefused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pinRefused != nil
}
