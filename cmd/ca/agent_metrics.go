package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// agentMetrics are what `ca agent --metrics-addr` serves: alert on renewal
// failures, not just on certificate expiry.
type agentMetrics struct {
	renewalFailures prometheus.Counter
	renewals        prometheus.Counter
	svidExpiry      prometheus.Gauge
}

func newAgentMetrics(reg prometheus.Registerer) *agentMetrics {
	m := &agentMetrics{
		renewalFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ca_agent_renewal_failures_total",
			Help: "Renewals of the workload's certificate that failed (and are retried with backoff)."}),
		renewals: prometheus.NewCounter(prometheus.CounterOpts{Name: "ca_agent_renewals_total",
			Help: "Renewals (and re-enrollments) that succeeded."}),
		svidExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ca_agent_svid_expiry_timestamp_seconds",
			Help: "notAfter of the X.509-SVID the agent serves, as a Unix time."}),
	}
	reg.MustRegister(m.renewalFailures, m.renewals, m.svidExpiry)
	return m
}

// serveAgentMetrics serves /metrics on addr until ctx ends.
func serveAgentMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = s.Close()
	}()
	go func() {
		if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ca agent: metrics listener", "err", err)
		}
	}()
	log.Info("ca agent: serving metrics", "addr", l.Addr().String())
	return nil
}
