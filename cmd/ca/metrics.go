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

// instrumentBackends makes every CA-key signature of this process
// observable in reg (latency by key and outcome), and adds the inventory,
// read from the store on scrape (cached). Call it before anything holds
// b.keys or b.deps. (The store's statements are timed from its opening:
// openBackends with a telemetry.StoreTimer.)
func instrumentBackends(b *backends, reg prometheus.Registerer, log *slog.Logger) error {
	ks, err := telemetry.InstrumentKeys(b.keys, reg)
	if err != nil {
		return err
	}
	if err := reg.Register(telemetry.NewInventory(b.store, clock.Real{}, telemetry.DefaultInventoryTTL, log)); err != nil {
		return err
	}
	b.keys = ks
	b.deps.Keys = ks
	return nil
}
