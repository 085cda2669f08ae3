package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Wire bounds of POST /v1/authz/reports.
const (
	// ReportsPath is the CA's route for decision counts.
	ReportsPath = "/v1/authz/reports"
	// MaxReportBytes and MaxReportRows bound one report body.
	MaxReportBytes = 64 << 10
	MaxReportRows  = 1000
	// DefaultReportInterval is how often a Reporter posts.
	DefaultReportInterval = 30 * time.Second
)

// Report is the body of POST /v1/authz/reports.
type Report struct {
	Service       string     `json:"service"`
	PolicyVersion string     `json:"policy_version"`
	WindowStart   time.Time  `json:"window_start"`
	WindowEnd     time.Time  `json:"window_end"`
	Counts        []CountRow `json:"counts"`
}

// ReporterConfig configures NewReporter.
type ReporterConfig struct {
	// URL is the CA's API base URL; Client talks to it over mTLS with the
	// service's own certificate (the CA checks the reporter is Service).
	URL     string
	Client  *http.Client
	Service string
	// Counts is what the middleware counts into (MiddlewareConfig.Counts).
	Counts *Counts
	// Interval between reports; default DefaultReportInterval.
	Interval time.Duration
	Clock    Clock
	Log      *slog.Logger
}

// Reporter posts the middleware's decision counts to the CA every Interval,
// in bodies of at most MaxReportRows rows and MaxReportBytes bytes. Counts
// that could not be delivered (network, 5xx, 429) are put back for the next
// report, within the Counts bound; a 4xx refusal drops them (and is logged).
type Reporter struct {
	cfg ReporterConfig

	mu    sync.Mutex // one flush at a time
	since time.Time
}

// NewReporter checks cfg.
func NewReporter(cfg ReporterConfig) (*Reporter, error) {
	if cfg.URL == "" || cfg.Client == nil || cfg.Service == "" || cfg.Counts == nil {
		return nil, errors.New("authz: reporter needs URL, Client, Service and Counts")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultReportInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Reporter{cfg: cfg, since: cfg.Clock.Now()}, nil
}

// Run reports every Interval until ctx ends, then reports once more (with a
// short deadline of its own) so counts are not lost on shutdown.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = r.Flush(fctx)
			cancel()
			return
		case <-t.C:
			_ = r.Flush(ctx)
		}
	}
}

// Flush posts everything counted since the last flush, one or more reports
// per policy version. It returns the first delivery error.
func (r *Reporter) Flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	byVersion, dropped := r.cfg.Counts.Take()
	start, end := r.since, r.cfg.Clock.Now()
	r.since = end
	if dropped > 0 {
		r.cfg.Log.Warn("authz: decision counts dropped (too many distinct keys in one window)", "dropped", dropped)
	}
	var first error
	for version, rows := range byVersion {
		for _, chunk := range chunkRows(r.cfg.Service, version, start, end, rows) {
			err := r.post(ctx, chunk)
			if err == nil {
				continue
			}
			if first == nil {
				first = err
			}
			var refused *reportRefused
			if errors.As(err, &refused) {
				r.cfg.Log.Error("authz: the CA refused a decision report; dropped", "err", err, "rows", len(chunk.Counts))
				continue
			}
			r.cfg.Log.Warn("authz: decision report not delivered; kept for the next one", "err", err, "rows", len(chunk.Counts))
			r.cfg.Counts.restore(version, chunk.Counts)
		}
	}
	return first
}

// chunkRows splits rows into reports within MaxReportRows and MaxReportBytes.
func chunkRows(service, version string, start, end time.Time, rows []CountRow) []Report {
	var out []Report
	base, _ := json.Marshal(Report{Service: service, PolicyVersion: version, WindowStart: start, WindowEnd: end})
	cur := Report{Service: service, PolicyVersion: version, WindowStart: start, WindowEnd: end}
	size := len(base)
	for _, row := range rows {
		b, _ := json.Marshal(row)
		if len(cur.Counts) > 0 && (len(cur.Counts) >= MaxReportRows || size+len(b)+1 > MaxReportBytes) {
			out = append(out, cur)
			cur = Report{Service: service, PolicyVersion: version, WindowStart: start, WindowEnd: end}
			size = len(base)
		}
		if size+len(b)+1 > MaxReportBytes {
			continue // one row alone is too large (cannot happen with valid SPIFFE IDs)
		}
		cur.Counts = append(cur.Counts, row)
		size += len(b) + 1
	}
	if len(cur.Counts) > 0 {
		out = append(out, cur)
	}
	return out
}

// reportRefused is a 4xx answer other than 429: retrying will not help.
type reportRefused struct {
	status string
	body   string
}

func (e *reportRefused) Error() string { return "report refused: " + e.status + ": " + e.body }

func (r *Reporter) post(ctx context.Context, rep Report) error {
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(r.cfg.URL, "/")+ReportsPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := r.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("authz: posting a report: %w", err)
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return nil
	case res.StatusCode >= 400 && res.StatusCode < 500 && res.StatusCode != http.StatusTooManyRequests:
		return &reportRefused{status: res.Status, body: strings.TrimSpace(string(msg))}
	default:
		return fmt.Errorf("authz: posting a report: %s", res.Status)
	}
}
