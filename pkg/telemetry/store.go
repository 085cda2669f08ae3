package telemetry

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// StoreTimer is a store.Observer that times every statement a store sends
// to its database into ca_store_call_duration_seconds{method, outcome},
// method being the statement's summary (sqlstore.Summary: "SELECT
// certificates", "INSERT audit_log", "COMMIT", "BATCH INSERT certificates",
// "CONNECT"). Give it to storeopen.OpenObserved: the store's driver (a pgx
// tracer, a database/sql driver wrapper) reports each statement, so that no
// store method needs timing code of its own.
type StoreTimer struct {
	duration *prometheus.HistogramVec
}

var _ store.Observer = (*StoreTimer)(nil)

// NewStoreTimer registers the store latency histogram in reg (or shares the
// one already there).
func NewStoreTimer(reg prometheus.Registerer) (*StoreTimer, error) {
	h, err := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ca_store_call_duration_seconds",
		Help:    "Time of the statements the store sends to its database, by method (the statement's keyword and table, e.g. SELECT certificates) and outcome (ok, conflict, unavailable, canceled, error).",
		Buckets: latencyBuckets,
	}, []string{"method", "outcome"}))
	if err != nil {
		return nil, fmt.Errorf("telemetry: registering store metrics: %w", err)
	}
	return &StoreTimer{duration: h}, nil
}

// ObserveStatement implements store.Observer.
func (t *StoreTimer) ObserveStatement(op string, d time.Duration, err error) {
	t.duration.WithLabelValues(op, outcome(err)).Observe(d.Seconds())
}
