package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/retention"
)

// startRetention prunes what outlived retention.* on whichever replica
// holds the retention leadership: at start and every retention.interval,
// in bg, until bg stops (before the store closes).
func startRetention(bg *background, cfg *config.Config, b *backends, reg prometheus.Registerer, log *slog.Logger) error {
	r := cfg.Retention
	p, err := retention.New(retention.Deps{Store: b.store, Clock: clock.Real{}, Log: log.With("component", "retention"), Metrics: reg},
		retention.Config{Certificates: r.Certificates, OCSPResponses: r.OCSPResponses, AuthzReports: r.AuthzReports, Interval: r.Interval,
			BatchSize: r.BatchSize, BatchPause: r.BatchPause, MaxRun: r.MaxRun})
	if err != nil {
		return err
	}
	bg.Go(func(ctx context.Context) {
		if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("retention pruner stopped", "error", err.Error())
		}
	})
	return nil
}
