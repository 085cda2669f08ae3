package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// leadershipName is the store leadership a replica holds for a prune run.
const leadershipName = "retention"

// Audit fields of a prune run.
const (
	ActionPrune = "prune"
	auditActor  = "system"
	auditTarget = "retention"
)

// Store is what the Pruner needs of the store.
type Store interface {
	PruneOCSPResponses(ctx context.Context, before time.Time, limit int) (int64, error)
	PruneExpiredCertificates(ctx context.Context, before time.Time, limit int) (int64, error)
	PruneEndedHolds(ctx context.Context, before time.Time, limit int) (int64, error)
	PruneAuthzReportCounts(ctx context.Context, before time.Time, limit int) (int64, error)
	PruneSessions(ctx context.Context, now time.Time) (int64, error)
	PruneUsedTokens(ctx context.Context, now time.Time) (int64, error)
	RetentionStats(ctx context.Context) (store.RetentionStats, error)
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
	TryLease(ctx context.Context, name string) (lease context.Context, release func(), ok bool, err error)
}

// Config is how long rows are kept and how a run is paced; see
// config.Retention for the meaning and bounds of each field.
type Config struct {
	Certificates  time.Duration
	OCSPResponses time.Duration
	AuthzReports  time.Duration
	Interval      time.Duration
	BatchSize     int
	BatchPause    time.Duration
	MaxRun        time.Duration
}

// Deps are the Pruner's collaborators. Store, Clock and Log are required;
// Metrics nil means no metrics.
type Deps struct {
	Store   Store
	Clock   clock.Clock
	Log     *slog.Logger
	Metrics prometheus.Registerer
}

// Pruner deletes what outlived its retention. Only the replica holding the
// "retention" leadership prunes; every replica reports the table sizes.
type Pruner struct {
	d   Deps
	cfg Config
	m   *metrics
}

// New checks d and cfg and registers the metrics.
func New(d Deps, cfg Config) (*Pruner, error) {
	if d.Store == nil || d.Clock == nil || d.Log == nil {
		return nil, errors.New("retention: a pruner needs a store, a clock and a logger")
	}
	if cfg.Certificates <= 0 || cfg.OCSPResponses <= 0 || cfg.AuthzReports <= 0 || cfg.OCSPResponses > cfg.Certificates ||
		cfg.Interval <= 0 || cfg.BatchSize <= 0 || cfg.BatchPause < 0 || cfg.MaxRun <= 0 {
		return nil, fmt.Errorf("retention: invalid configuration %+v", cfg)
	}
	m, err := newMetrics(d.Metrics)
	if err != nil {
		return nil, err
	}
	return &Pruner{d: d, cfg: cfg, m: m}, nil
}

// Result is what one run did.
type Result struct {
	// Leader says whether this replica held the leadership and pruned;
	// when false, nothing else is set.
	Leader bool
	// Now is the clock's time the cut-offs derive from.
	Now time.Time
	// CertificatesBefore is the cut-off of certificates (NotAfter before
	// it) and of ended identity holds; OCSPBefore that of OCSP responses
	// (their certificate's NotAfter before it). Sessions and used tokens
	// are pruned once expired at Now.
	CertificatesBefore time.Time
	OCSPBefore         time.Time
	// AuthzReportsBefore is the cut-off of authorization report aggregates
	// (their minute before it).
	AuthzReportsBefore time.Time
	// Pruned counts the rows deleted per table (store.RetentionTables
	// names).
	Pruned map[string]int64
	// Complete is false when the run stopped at MaxRun (or on an error)
	// with rows possibly left for the next run.
	Complete bool
	// Duration is the run's wall time.
	Duration time.Duration
}

// Once prunes if this replica is the leader, audits and logs the run, and
// refreshes the metrics. A run that fails part-way still audits what it
// deleted before the failure and returns the failure.
func (p *Pruner) Once(ctx context.Context) (Result, error) {
	lease, release, ok, err := p.d.Store.TryLease(ctx, leadershipName)
	if err != nil {
		return Result{}, fmt.Errorf("retention: leadership: %w", err)
	}
	if !ok {
		p.refreshStats(ctx)
		return Result{}, nil
	}
	defer release()
	ctx = lease // a leader cut off from the database stops within the lease's bound
	start := time.Now()
	now := p.d.Clock.Now()
	res := Result{
		Leader: true, Now: now,
		CertificatesBefore: now.Add(-p.cfg.Certificates),
		OCSPBefore:         now.Add(-p.cfg.OCSPResponses),
		AuthzReportsBefore: now.Add(-p.cfg.AuthzReports),
		Pruned:             map[string]int64{},
	}
	runCtx, cancel := context.WithTimeout(ctx, p.cfg.MaxRun)
	defer cancel()
	runErr := p.prune(runCtx, &res)
	if runErr != nil && errors.Is(runErr, context.DeadlineExceeded) && ctx.Err() == nil {
		runErr = nil // the run's time is up; the rest waits for the next run
	}
	res.Duration = time.Since(start)
	// The audit entry is appended even when ctx is done: rows were deleted.
	if err := p.audit(context.WithoutCancel(ctx), res, runErr); err != nil {
		runErr = errors.Join(runErr, err)
	}
	// The sizes first, then the run counters: whoever sees a run counted
	// (a dashboard, an alert, a test) sees the sizes after it, not the
	// sizes from before (the e2e test once read the start-up figures).
	p.refreshStats(ctx)
	p.observe(res, runErr)
	return res, runErr
}

// prune deletes table by table, OCSP responses before the certificates
// they reference, batch by batch, until ctx is done.
func (p *Pruner) prune(ctx context.Context, res *Result) error {
	batched := []struct {
		table  string
		before time.Time
		fn     func(context.Context, time.Time, int) (int64, error)
	}{
		{"ocsp_responses", res.OCSPBefore, p.d.Store.PruneOCSPResponses},
		{"certificates", res.CertificatesBefore, p.d.Store.PruneExpiredCertificates},
		{"identity_holds", res.CertificatesBefore, p.d.Store.PruneEndedHolds},
		{"authz_report_counts", res.AuthzReportsBefore, p.d.Store.PruneAuthzReportCounts},
	}
	for _, s := range batched {
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			began := time.Now()
			n, err := s.fn(ctx, s.before, p.cfg.BatchSize)
			took := time.Since(began)
			res.Pruned[s.table] += n
			if err != nil {
				return fmt.Errorf("retention: pruning %s: %w", s.table, err)
			}
			if n < int64(p.cfg.BatchSize) {
				break
			}
			// At least as long as the batch took: the prune never takes
			// more than half of the database's time from issuance.
			if err := pause(ctx, max(p.cfg.BatchPause, took)); err != nil {
				return err
			}
		}
	}
	for _, s := range []struct {
		table string
		fn    func(context.Context, time.Time) (int64, error)
	}{
		{"dashboard_sessions", p.d.Store.PruneSessions},
		{"used_tokens", p.d.Store.PruneUsedTokens},
	} {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := s.fn(ctx, res.Now)
		res.Pruned[s.table] += n
		if err != nil {
			return fmt.Errorf("retention: pruning %s: %w", s.table, err)
		}
	}
	res.Complete = true
	return nil
}

// pause waits d (wall time: it paces the database, it decides nothing) or
// until ctx is done.
func pause(ctx context.Context, d time.Duration) error {
	return clock.Sleep(ctx, d)
}

// auditDetails is the Details of a prune run's audit entry.
type auditDetails struct {
	Pruned     map[string]int64  `json:"pruned"`
	Cutoffs    map[string]string `json:"cutoffs"`
	Complete   bool              `json:"complete"`
	DurationMS int64             `json:"duration_ms"`
	Error      string            `json:"error,omitempty"`
}

func (p *Pruner) audit(ctx context.Context, res Result, runErr error) error {
	d := auditDetails{
		Pruned: res.Pruned,
		Cutoffs: map[string]string{
			"certificates":        res.CertificatesBefore.UTC().Format(time.RFC3339Nano),
			"ocsp_responses":      res.OCSPBefore.UTC().Format(time.RFC3339Nano),
			"identity_holds":      res.CertificatesBefore.UTC().Format(time.RFC3339Nano),
			"authz_report_counts": res.AuthzReportsBefore.UTC().Format(time.RFC3339Nano),
			"dashboard_sessions":  res.Now.UTC().Format(time.RFC3339Nano),
			"used_tokens":         res.Now.UTC().Format(time.RFC3339Nano),
		},
		Complete:   res.Complete,
		DurationMS: res.Duration.Milliseconds(),
	}
	level, msg := slog.LevelInfo, "retention prune"
	if runErr != nil {
		// Store errors carry no secrets; their text helps the operator.
		d.Error = runErr.Error()
		level, msg = slog.LevelError, "retention prune failed part-way"
	}
	details, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("retention: audit details: %w", err)
	}
	attrs := []any{
		"certificates", res.Pruned["certificates"], "ocsp_responses", res.Pruned["ocsp_responses"],
		"identity_holds", res.Pruned["identity_holds"], "dashboard_sessions", res.Pruned["dashboard_sessions"],
		"used_tokens", res.Pruned["used_tokens"],
		"certificates_before", d.Cutoffs["certificates"], "ocsp_responses_before", d.Cutoffs["ocsp_responses"],
		"complete", res.Complete, "duration_ms", d.DurationMS,
	}
	if runErr != nil {
		attrs = append(attrs, "error", runErr.Error())
	}
	p.d.Log.Log(ctx, level, msg, attrs...)
	_, err = p.d.Store.AppendAudit(ctx, store.AuditEntry{
		Time: res.Now, Actor: auditActor, Action: ActionPrune, Target: auditTarget, Decision: "allow", Details: details,
	})
	if err != nil {
		p.d.Log.ErrorContext(ctx, "retention prune not audited", "error", err.Error())
		return fmt.Errorf("retention: audit: %w", err)
	}
	return nil
}

// Run reports the table sizes at once, then prunes every Interval (the
// first run one Interval after start, so that restarts do not add runs)
// until ctx is done, logging failures, and returns ctx's error.
func (p *Pruner) Run(ctx context.Context) error {
	p.refreshStats(ctx)
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := p.Once(ctx); err != nil && ctx.Err() == nil {
			p.d.Log.ErrorContext(ctx, "retention prune failed", "error", err.Error())
		}
	}
}
