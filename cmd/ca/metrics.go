package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/telemetry"
)

// newMetricsRegistry is the registry /metrics serves, with the Go runtime and
// process collectors.
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// instrumentBackends makes every store call and every CA-key signature of
// this process observable in reg (latency by method or key, and outcome),
// and adds the inventory, read from the store on scrape (cached). Call it
// before anything holds b.store, b.keys or b.deps.
func instrumentBackends(b *backends, reg prometheus.Registerer, log *slog.Logger) error {
	st, err := telemetry.InstrumentStore(b.store, reg)
	if err != nil {
		return err
	}
	ks, err := telemetry.InstrumentKeys(b.keys, reg)
	if err != nil {
		return err
	}
	if err := reg.Register(telemetry.NewInventory(st, clock.Real{}, telemetry.DefaultInventoryTTL, log)); err != nil {
		return err
	}
	b.store, b.keys = st, ks
	b.deps.Store, b.deps.Keys = st, ks
	return nil
}
