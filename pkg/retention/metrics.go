package retention

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// metrics are the retention counters and gauges. A nil *metrics records
// nothing.
type metrics struct {
	pruned     *prometheus.CounterVec
	runs       *prometheus.CounterVec
	lastRun    prometheus.Gauge
	runSeconds prometheus.Gauge
	oldest     prometheus.Gauge
	rows       *prometheus.GaugeVec
	bytes      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_retention_pruned_rows_total",
			Help: "Rows deleted by retention prune runs of this replica, by table.",
		}, []string{"table"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_retention_runs_total",
			Help: "Retention prune runs this replica led, by outcome: complete, partial (stopped at retention.max_run), error.",
		}, []string{"outcome"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ca_retention_last_run_timestamp_seconds",
			Help: "Unix time (the CA's clock) of the last retention prune run this replica led.",
		}),
		runSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ca_retention_last_run_duration_seconds",
			Help: "Wall time of the last retention prune run this replica led.",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ca_retention_oldest_certificate_not_after_timestamp_seconds",
			Help: "Unix time of the earliest notAfter among the retained certificates (0 when there is none).",
		}),
		rows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ca_store_table_rows",
			Help: "Rows of the tables that grow with use (exact on SQLite; the planner's estimate on Postgres for large tables), by table.",
		}, []string{"table"}),
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ca_store_table_bytes",
			Help: "Bytes of the tables that grow with use, with their indexes, by table (absent when the database cannot tell).",
		}, []string{"table"}),
	}
	for _, c := range []prometheus.Collector{m.pruned, m.runs, m.lastRun, m.runSeconds, m.oldest, m.rows, m.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("retention: registering metrics (one pruner per registry): %w", err)
		}
	}
	return m, nil
}

func (p *Pruner) observe(res Result, runErr error) {
	if p.m == nil {
		return
	}
	for table, n := range res.Pruned {
		p.m.pruned.WithLabelValues(table).Add(float64(n))
	}
	outcome := "complete"
	switch {
	case runErr != nil:
		outcome = "error"
	case !res.Complete:
		outcome = "partial"
	}
	p.m.runs.WithLabelValues(outcome).Inc()
	p.m.lastRun.Set(float64(res.Now.UnixMilli()) / 1000)
	p.m.runSeconds.Set(res.Duration.Seconds())
}

// refreshStats reads the table sizes; a failure is logged, not returned
// (metrics must not fail a prune).
func (p *Pruner) refreshStats(ctx context.Context) {
	if p.m == nil {
		return
	}
	st, err := p.d.Store.RetentionStats(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.d.Log.WarnContext(ctx, "retention stats unavailable", "error", err.Error())
		}
		return
	}
	p.setStats(st)
}

func (p *Pruner) setStats(st store.RetentionStats) {
	if st.OldestNotAfter.IsZero() {
		p.m.oldest.Set(0)
	} else {
		p.m.oldest.Set(float64(st.OldestNotAfter.UnixMilli()) / 1000)
	}
	for _, t := range st.Tables {
		p.m.rows.WithLabelValues(t.Table).Set(float64(t.Rows))
		if t.Bytes >= 0 {
			p.m.bytes.WithLabelValues(t.Table).Set(float64(t.Bytes))
		}
	}
}
