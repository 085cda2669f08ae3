package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

type healthBody struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// healthz is liveness: the process answers. It checks nothing else, so that
// an unreachable database does not get the process restarted.
func (rt *Routes) healthz(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, healthBody{Status: "ok"})
}

// readyz is readiness: the database and the key store both answer a ping
// within ReadyTimeout each. A failure is a 503 problem whose reason names the
// dependency (store_unavailable, hsm_unavailable). The answer comes from
// rt.ready: at most one check per readyCacheFor, shared by concurrent callers,
// because anyone can call /readyz and each check is a database round trip and
// a key-store session.
func (rt *Routes) readyz(w http.ResponseWriter, r *http.Request) error {
	res := rt.ready.get(r.Context())
	if res.failed != nil {
		if errors.Is(res.err, hsm.ErrPINRefused) {
			return res.err // 503 hsm_pin_refused (classify): no login until a reload
		}
		reason := res.failed.reason
		if errors.Is(res.err, hsm.ErrUnsupported) {
			reason = ReasonHSMUnsupported // a configuration error, not an outage
		}
		return &Error{Kind: KindUnavailable, Reason: reason, Detail: res.failed.detail, Err: res.err}
	}
	w.Header().Set("Cache-Control", "no-store")
	ok := map[string]string{}
	for _, c := range rt.ready.checks {
		ok[c.name] = "ok"
	}
	if rt.d.AuditLogRole != "" {
		ok["audit_log"] = rt.d.AuditLogRole // informative; never fails readiness
	}
	return writeJSON(w, http.StatusOK, healthBody{Status: "ready", Checks: ok})
}

// readyCacheFor is how long one readiness result answers /readyz.
const readyCacheFor = time.Second

// readyCheck is one dependency /readyz checks.
type readyCheck struct {
	name   string
	dep    Pinger
	reason Reason
	detail string
}

// readyResult is one run of the checks: the first that failed (nil if none)
// and its error, and when the run started (by the injected clock).
type readyResult struct {
	at     time.Time
	failed *readyCheck
	err    error
}

// readiness runs the readiness checks at most once per readyCacheFor and
// shares a run in flight between concurrent callers (singleflight), so that
// a flood of anonymous /readyz requests costs one database ping and one
// key-store probe per second, whatever its rate.
type readiness struct {
	clock   clock.Clock
	timeout time.Duration
	checks  []readyCheck

	mu      sync.Mutex
	last    *readyResult  // the latest finished run
	running chan struct{} // closed when the run in flight finishes
}

// KeyReadiness is a component with a key the CA needs to serve (the OCSP
// responder, the JWT-SVID signer): KeyReady says, without signing, whether
// that key can sign. *revoke.Responder and *jwtkeys.Signer fit.
type KeyReadiness interface {
	KeyReady(ctx context.Context) error
}

// keyPinger adapts a KeyReadiness to a readiness check.
type keyPinger struct{ k KeyReadiness }

func (p keyPinger) Ping(ctx context.Context) error { return p.k.KeyReady(ctx) }

func newReadiness(d Deps) *readiness {
	checks := []readyCheck{
		{"store", d.Store, ReasonStoreUnavailable, "the database does not answer"},
		{"hsm", d.Keys, ReasonHSMUnavailable, "the key store does not answer"},
	}
	// The keys the CA needs must be able to sign: a CA that cannot answer
	// OCSP or sign JWT-SVIDs is not ready (issue 17).
	if k, ok := d.Revocation.(KeyReadiness); ok {
		checks = append(checks, readyCheck{"ocsp_key", keyPinger{k}, ReasonHSMUnavailable, "the OCSP responder key cannot sign"})
	}
	if k, ok := d.JWT.Signer.(KeyReadiness); ok {
		checks = append(checks, readyCheck{"jwt_key", keyPinger{k}, ReasonHSMUnavailable, "the JWT-SVID signing key cannot sign"})
	}
	return &readiness{clock: d.Clock, timeout: d.ReadyTimeout, checks: checks}
}

// get returns a result at most readyCacheFor old: the cached one, or the one
// in flight (waiting for it), or a new run. A run is not tied to the request
// that started it (its caller may hang up while others wait); each check is
// bounded by the timeout, so a wait is too.
func (rd *readiness) get(ctx context.Context) *readyResult {
	rd.mu.Lock()
	if l := rd.last; l != nil && rd.clock.Now().Sub(l.at) < readyCacheFor {
		rd.mu.Unlock()
		return l
	}
	if wait := rd.running; wait != nil {
		rd.mu.Unlock()
		<-wait
		rd.mu.Lock()
		defer rd.mu.Unlock()
		return rd.last
	}
	done := make(chan struct{})
	rd.running = done
	rd.mu.Unlock()
	// Should a check panic, the waiters get a failed result instead of
	// waiting for ever (and the recoverer answers the caller).
	res := &readyResult{at: rd.clock.Now(), failed: &rd.checks[len(rd.checks)-1], err: errReadinessPanicked}
	defer func() {
		rd.mu.Lock()
		rd.last, rd.running = res, nil
		rd.mu.Unlock()
		close(done)
	}()
	res = rd.run(context.WithoutCancel(ctx))
	return res
}

var errReadinessPanicked = errors.New("server: a readiness check panicked")

func (rd *readiness) run(ctx context.Context) *readyResult {
	res := &readyResult{at: rd.clock.Now()}
	for i := range rd.checks {
		c := &rd.checks[i]
		cctx, cancel := context.WithTimeout(ctx, rd.timeout)
		err := c.dep.Ping(cctx)
		cancel()
		if err != nil {
			res.failed, res.err = c, err
			break
		}
	}
	return res
}
