package server

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
)

// Bounded answers under partitions (issue 18). A network partition neither
// refuses connections nor resets them: without a deadline a request waits
// on a silent database or token for as long as TCP does. Every request
// therefore carries a deadline that every store call, HSM call and outgoing
// fetch made on its behalf inherits through its context; a dependency that
// has not answered when it passes makes the request fail with 503
// store_unavailable or hsm_unavailable and Retry-After, so that clients
// retry (elsewhere) instead of waiting.

// DefaultRequestTimeout is Deps.RequestTimeout when it is zero.
const DefaultRequestTimeout = 10 * time.Second

// retryAfterUnavailable is the Retry-After, in seconds, of a 503 answer
// for an unavailable dependency: long enough not to hammer a database or
// token that is coming back, short enough for CI jobs to retry in time.
const retryAfterUnavailable = 5

// requestDeadline gives every request's context a deadline timeout from
// now. Handlers and everything they call take their context from the
// request, so the deadline reaches the store, the key store and outgoing
// fetches; a handler that loses the race answers with the error its
// dependency returned, which classify maps to a 503.
func requestDeadline(timeout time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			parent := r.Context()
			ctx, cancel := context.WithTimeout(parent, timeout)
			defer cancel()
			ctx = context.WithValue(ctx, stepKey{}, step{parent: parent, timeout: timeout})
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

type stepKey struct{}

// step is what stepContext needs: the request's context before its
// deadline, and the deadline's length.
type step struct {
	parent  context.Context
	timeout time.Duration
}

// stepContext is for a handler that streams an answer longer than one
// request deadline (the CSV export): each step (a page read) gets the
// request timeout afresh, still ending when the client goes away. Outside
// requestDeadline it returns ctx with a no-op cancel.
func stepContext(ctx context.Context) (context.Context, context.CancelFunc) {
	st, ok := ctx.Value(stepKey{}).(step)
	if !ok {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithValue(st.parent, requestIDKey, RequestID(ctx)), st.timeout)
}

// unavailableReason reports whether reason means a dependency did not
// answer, the answers that carry Retry-After and are logged once per burst.
func unavailableReason(reason Reason) bool {
	return reason == ReasonStoreUnavailable || reason == ReasonHSMUnavailable
}

// setRetryAfter adds Retry-After to a 503 for an unavailable dependency or
// an overload.
func setRetryAfter(w http.ResponseWriter, kind Kind, reason Reason) {
	switch {
	case kind != KindUnavailable:
	case unavailableReason(reason):
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterUnavailable))
	case reason == ReasonOverloaded:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterOverloaded))
	}
}

// burstWindow is how long after the last failure of a reason a new one
// still belongs to the same burst.
const burstWindow = 30 * time.Second

// burstLog logs the failures of an unavailable dependency once per burst: a
// partition fails every request, and a line per request would flood the log
// exactly when an operator reads it. The first failure of a burst is logged
// with its cause; the later ones are counted, and the count is logged with
// the first failure after burstWindow without one (or with the next burst).
type burstLog struct {
	clock clock.Clock
	mu    sync.Mutex
	state map[Reason]*burst
}

type burst struct {
	last       time.Time // last failure seen
	suppressed int       // failures not logged since the burst's first
}

func newBurstLog(c clock.Clock) *burstLog {
	return &burstLog{clock: c, state: map[Reason]*burst{}}
}

// log logs the failure if it starts a burst; otherwise it counts it.
func (b *burstLog) log(ctx context.Context, l *slog.Logger, reason Reason, status int, id string, err error) {
	now := b.clock.Now()
	b.mu.Lock()
	st := b.state[reason]
	if st == nil {
		st = &burst{}
		b.state[reason] = st
	}
	first := st.last.IsZero() || now.Sub(st.last) >= burstWindow
	prev := st.suppressed
	st.last = now
	if first {
		st.suppressed = 0
	} else {
		st.suppressed++
	}
	b.mu.Unlock()
	if !first {
		l.DebugContext(ctx, "request failed (dependency unavailable, burst already logged)",
			"request_id", id, "status", status, "reason", string(reason))
		return
	}
	l.ErrorContext(ctx, "request failed: dependency unavailable (further failures of this burst are counted, not logged)",
		"request_id", id, "status", status, "reason", string(reason),
		"previous_burst_suppressed", prev, "err", err)
}

// Bounds of the audit append that records a refusal, which happens after
// the decision and before the answer. It does not inherit the request's
// cancellation (a client that hangs up is still audited) but must not wait
// on a silent database for ever either: the answer waits for it.
const (
	// denialAuditTimeout bounds the append of an ordinary refusal.
	denialAuditTimeout = 5 * time.Second
	// unavailableAuditTimeout bounds the append of a refusal because a
	// dependency did not answer: the database likely will not answer now
	// either, and the answer is already at the request deadline. A
	// failed append is logged (the decision line is logged regardless).
	unavailableAuditTimeout = 500 * time.Millisecond
)

// denialAuditContext is the context of the audit append of a refusal with
// reason, made for the request whose context is ctx.
func denialAuditContext(ctx context.Context, reason Reason) (context.Context, context.CancelFunc) {
	d := denialAuditTimeout
	if unavailableReason(reason) {
		d = unavailableAuditTimeout
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}
