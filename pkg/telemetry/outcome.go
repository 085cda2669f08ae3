package telemetry

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Outcome label values shared by the families of this package.
const (
	OutcomeOK          = "ok"
	OutcomeNotFound    = "not_found"
	OutcomeConflict    = "conflict"
	OutcomeUnavailable = "unavailable"
	OutcomeInvalid     = "invalid"
	OutcomeCanceled    = "canceled"
	OutcomeError       = "error"
)

// outcome classifies err into one of the Outcome values by its sentinel
// errors, never by its message.
func outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, store.ErrNotFound), errors.Is(err, hsm.ErrKeyNotFound):
		return OutcomeNotFound
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrSuperseded), errors.Is(err, hsm.ErrKeyExists):
		return OutcomeConflict
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, hsm.ErrUnavailable):
		return OutcomeUnavailable
	case errors.Is(err, store.ErrInvalidQuery), errors.Is(err, issuer.ErrInvalidRequest):
		return OutcomeInvalid
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	return OutcomeError
}

// register registers c in reg, or returns the collector already registered
// under the same description, so that two wrappers in one process share one
// family.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// latencyBuckets suit calls that take from a fraction of a millisecond
// (an indexed read) to seconds (a stalled database or token).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
