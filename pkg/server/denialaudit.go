package server

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// denialAudit bounds the audit appends of refusals of unauthenticated
// requests to /v1/enroll, /v1/renew and /v1/jwt: anyone can make them, and
// audit appends are serialised (hash chain), so an unbounded flood of them
// would compete with issuance for the chain. They share the operator
// denials' limiter (one budget for everything an anonymous client can make
// the CA audit, per process). A skipped denial is still logged and counted
// in its decision metric; it is counted in ca_denials_unaudited_total, and
// the next audited denial says how many were skipped before it
// ("unaudited_before" in its details).
//
// Unauthenticated means: for enrollment, no token whose signature, times
// and audience were verified (the enroll.Error carries no Subject); for
// renewal and JWT-SVIDs, no client certificate that is a current,
// unrevoked certificate of this CA. Denials of authenticated requests are
// always audited.
type denialAudit struct {
	limiter   *denialLimiter
	clock     clock.Clock
	unaudited *prometheus.CounterVec
}

func newDenialAudit(reg prometheus.Registerer, limiter *denialLimiter, clk clock.Clock) (*denialAudit, error) {
	a := &denialAudit{
		limiter: limiter, clock: clk,
		unaudited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_denials_unaudited_total",
			Help: "Refusals of unauthenticated enroll, renew and jwt requests not appended to the audit log because of the denial rate limit, by action.",
		}, []string{"action"}),
	}
	if err := reg.Register(a.unaudited); err != nil {
		return nil, err
	}
	return a, nil
}

// admit says whether a denial of action is appended to the audit log, and
// how many unauthenticated denials (of any route) were skipped before it.
// A nil *denialAudit admits everything.
func (a *denialAudit) admit(action string, authenticated bool) (skipped int64, ok bool) {
	if a == nil || authenticated {
		return 0, true
	}
	skipped, ok = a.limiter.take(a.clock.Now())
	if !ok {
		a.unaudited.WithLabelValues(action).Inc()
	}
	return skipped, ok
}

// auditAppender appends to the audit log; store.Store fits.
type auditAppender interface {
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

// record puts the answer's status into info's details and, when admit lets
// the denial of action through, appends the record entry makes of the
// details (denialDetailsJSON) to records, within denialAuditContext's bound:
// the client may hang up, the denial is recorded anyway. It returns the
// record and the append's error for the caller's log line; a denial held
// back by the rate limit is no error.
func (a *denialAudit) record(r *http.Request, records auditAppender, action string, info *decisionInfo, status int,
	entry func(details json.RawMessage) store.AuditEntry) (store.AuditEntry, error) {
	info.details["status"] = http.StatusText(status)
	skipped, audit := a.admit(action, info.authenticated)
	if !audit {
		return store.AuditEntry{}, nil
	}
	e := entry(denialDetailsJSON(info.details, skipped))
	actx, cancel := denialAuditContext(r.Context(), Reason(e.Reason))
	defer cancel()
	_, err := records.AppendAudit(actx, e)
	return e, err
}

// denialDetailsJSON is a denial's details as JSON, with
// "unaudited_before": skipped (a number) when skipped > 0.
func denialDetailsJSON(details map[string]string, skipped int64) json.RawMessage {
	if skipped <= 0 {
		raw, _ := json.Marshal(details)
		return raw
	}
	m := make(map[string]any, len(details)+1)
	for k, v := range details {
		m[k] = v
	}
	m["unaudited_before"] = skipped
	raw, _ := json.Marshal(m)
	return raw
}
