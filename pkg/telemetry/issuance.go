package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// LeafIssuer signs already-authorised leaf requests and records them;
// *issuer.Current fits.
type LeafIssuer interface {
	Issue(ctx context.Context, r issuer.Request) (*issuer.Issued, error)
}

// Issuer is a LeafIssuer that counts every issuance attempt into
// ca_issuance_total{action, rule, outcome, reason} and times it into
// ca_issuance_duration_seconds{action, outcome}. The action is the
// request's (issue, renew), or "server" when it names none (the API
// listener's own certificate); the rule is "none" when it names none. Every leaf passes through
// it: enrollment, renewal and the API listener's own certificate.
type Issuer struct {
	inner    LeafIssuer
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Issuance outcomes and reasons, as label values.
const (
	IssuanceIssued = "issued"
	IssuanceFailed = "failed"

	ReasonInvalidRequest   = "invalid_request"
	ReasonIssuerExpired    = "issuer_expired"
	ReasonLint             = "lint"
	ReasonNotInitialized   = "not_initialized"
	ReasonHSMUnavailable   = "hsm_unavailable"
	ReasonStoreUnavailable = "store_unavailable"
	ReasonSerialConflict   = "serial_conflict"
	ReasonSuperseded       = "superseded" // a renewal lost to another renewal of the same certificate
	ReasonCanceled         = "canceled"
	ReasonInternal         = "internal"
)

// InstrumentIssuer wraps inner, registering its families in reg.
func InstrumentIssuer(inner LeafIssuer, reg prometheus.Registerer) (*Issuer, error) {
	total, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ca_issuance_total",
		Help: "Leaf issuance attempts by the CA, by action (issue, renew, server), policy rule, outcome (issued, failed) and reason of a failure.",
	}, []string{"action", "rule", "outcome", "reason"}))
	if err != nil {
		return nil, fmt.Errorf("telemetry: registering issuance metrics: %w", err)
	}
	dur, err := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ca_issuance_duration_seconds",
		Help:    "Time to build, lint, sign (HSM) and record one leaf, by action and outcome.",
		Buckets: latencyBuckets,
	}, []string{"action", "outcome"}))
	if err != nil {
		return nil, fmt.Errorf("telemetry: registering issuance metrics: %w", err)
	}
	return &Issuer{inner: inner, total: total, duration: dur}, nil
}

// Issue implements LeafIssuer: the wrapped issuer's result, counted.
func (i *Issuer) Issue(ctx context.Context, r issuer.Request) (*issuer.Issued, error) {
	start := time.Now()
	got, err := i.inner.Issue(ctx, r)
	action := r.Action
	switch {
	case action == "" && r.RenewedFrom != "":
		action = "renew"
	case action == "":
		// Only the API listener's own certificate names no action.
		action = "server"
	}
	rule := r.PolicyRule
	if rule == "" {
		rule = "none"
	}
	out, reason := IssuanceIssued, ""
	if err != nil {
		out, reason = IssuanceFailed, IssuanceReason(err)
	}
	i.total.WithLabelValues(action, rule, out, reason).Inc()
	i.duration.WithLabelValues(action, out).Observe(time.Since(start).Seconds())
	return got, err
}

// IssuanceReason names why an issuance failed, from the issuer's, the key
// store's and the store's sentinel errors.
func IssuanceReason(err error) string {
	switch {
	case errors.Is(err, issuer.ErrInvalidRequest):
		return ReasonInvalidRequest
	case errors.Is(err, issuer.ErrIssuerExpired):
		return ReasonIssuerExpired
	case errors.Is(err, issuer.ErrLint):
		return ReasonLint
	case errors.Is(err, issuer.ErrNotInitialized):
		return ReasonNotInitialized
	case errors.Is(err, hsm.ErrUnavailable), errors.Is(err, hsm.ErrClosed), errors.Is(err, hsm.ErrKeyNotFound):
		return ReasonHSMUnavailable
	case errors.Is(err, store.ErrUnavailable):
		return ReasonStoreUnavailable
	case errors.Is(err, store.ErrConflict):
		return ReasonSerialConflict
	case errors.Is(err, store.ErrSuperseded):
		return ReasonSuperseded
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ReasonCanceled
	}
	return ReasonInternal
}
