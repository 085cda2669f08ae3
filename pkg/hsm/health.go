package hsm

import (
	"errors"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
)

// KeyHealth remembers whether a key the CA needs (the OCSP responder key,
// the JWT-SVID key) could sign the last time it was used, for readiness:
// /readyz must not say ready while such a key cannot sign, and it must not
// sign to find out (anyone can call it). A recorded failure counts for a
// window after it happened, so that an instance taken out of rotation
// becomes ready again once the token recovers even if no request reaches
// it; any success clears it. The zero value and nil are usable (nil records
// nothing and is always healthy).
type KeyHealth struct {
	Clock  clock.Clock   // default clock.Real
	Window time.Duration // default DefaultKeyHealthWindow

	mu  sync.Mutex
	err error
	at  time.Time
}

// DefaultKeyHealthWindow is how long a failure to sign keeps readiness down.
const DefaultKeyHealthWindow = 30 * time.Second

// Record notes the outcome of one use of the key: nil clears a failure; an
// error meaning the key store cannot sign with the key (ErrUnsupported,
// ErrUnavailable, ErrKeyNotFound, ErrClosed, ErrPINRefused) is kept; any
// other error (a bad request, a database failure) says nothing about the
// key and is ignored.
func (h *KeyHealth) Record(err error) {
	if h == nil {
		return
	}
	if err != nil && !KeyCannotSign(err) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err, h.at = err, h.now()
}

// Err returns the failure recorded within the window, or nil.
func (h *KeyHealth) Err() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.Window
	if w <= 0 {
		w = DefaultKeyHealthWindow
	}
	if h.err != nil && h.now().Sub(h.at) < w {
		return h.err
	}
	return nil
}

func (h *KeyHealth) now() time.Time {
	if h.Clock == nil {
		return time.Now()
	}
	return h.Clock.Now()
}

// KeyCannotSign reports whether err means the key store could not sign with
// a key, as opposed to a problem with the request or another dependency.
func KeyCannotSign(err error) bool {
	return errors.Is(err, ErrUnsupported) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrKeyNotFound) ||
		errors.Is(err, ErrClosed) || errors.Is(err, ErrPINRefused)
}
