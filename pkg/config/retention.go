package config

import "time"

// Retention is how long rows that only grow are kept, and how the leader
// prunes them (pkg/retention). Denials have no retention of their own: they
// live only in the audit log, which pruning never touches.
type Retention struct {
	// Certificates is how long after its NotAfter an expired certificate
	// (revoked or not) stays in the inventory (default 2160h, 90 days; at
	// least 1h, at most 87600h). Ended identity holds are kept as long after
	// their end.
	Certificates time.Duration `yaml:"certificates"`
	// OCSPResponses is how long after its certificate's NotAfter a
	// pre-signed OCSP response is kept (default 1h; at least 1s, at most
	// Certificates): after that the responder answers unknown, as RFC 6960
	// allows for expired certificates.
	OCSPResponses time.Duration `yaml:"ocsp_responses"`
	// Interval is how often the leader prunes (default 10m; 10s to 24h).
	// AuthzReports is how long the per-minute aggregates of the decision
	// counts services report (POST /v1/authz/reports) are kept (default
	// 720h, 30 days; 1h to 87600h): the dashboard's authorization page
	// reads the recent ones.
	AuthzReports time.Duration `yaml:"authz_reports"`
	Interval     time.Duration `yaml:"interval"`
	// Audit is the youngest age of audit entries `ca audit archive
	// --remove` may remove (the archive's last entry must be at least this
	// old); 0, the default, keeps nothing back: entries stay until an
	// operator archives them, and are never removed automatically.
	Audit time.Duration `yaml:"audit"`
	// BatchSize is how many rows one delete transaction removes at most
	// (default 1000; 1 to 10000).
	BatchSize int `yaml:"batch_size"`
	// BatchPause is the pause between two batches, so that issuance gets the
	// database between them (default 50ms; at most 10s). The pruner pauses
	// at least as long as the batch took, whatever this says.
	BatchPause time.Duration `yaml:"batch_pause"`
	// MaxRun bounds one prune run; what is left waits for the next interval
	// (default 2m; 1s to Interval).
	MaxRun time.Duration `yaml:"max_run"`
}

// Retention defaults.
const (
	DefaultRetainCertificates  = 90 * 24 * time.Hour
	DefaultRetainOCSPResponses = time.Hour
	DefaultRetainAuthzReports  = 30 * 24 * time.Hour
	DefaultRetentionInterval   = 10 * time.Minute
	DefaultRetentionBatchSize  = 1000
	DefaultRetentionBatchPause = 50 * time.Millisecond
	DefaultRetentionMaxRun     = 2 * time.Minute
)

func (r *Retention) applyDefaults() {
	if r.Certificates == 0 {
		r.Certificates = DefaultRetainCertificates
	}
	if r.OCSPResponses == 0 {
		r.OCSPResponses = DefaultRetainOCSPResponses
	}
	if r.AuthzReports == 0 {
		r.AuthzReports = DefaultRetainAuthzReports
	}
	if r.Interval == 0 {
		r.Interval = DefaultRetentionInterval
	}
	if r.BatchSize == 0 {
		r.BatchSize = DefaultRetentionBatchSize
	}
	if r.BatchPause == 0 {
		r.BatchPause = DefaultRetentionBatchPause
	}
	if r.MaxRun == 0 {
		r.MaxRun = min(DefaultRetentionMaxRun, r.Interval)
	}
}

func (c *Config) validateRetention() error {
	r := c.Retention
	switch {
	case r.Certificates < time.Hour || r.Certificates > 87600*time.Hour:
		return fieldErr("retention.certificates", "%s is outside 1h..87600h", r.Certificates)
	case r.OCSPResponses < time.Second || r.OCSPResponses > r.Certificates:
		return fieldErr("retention.ocsp_responses", "%s is outside 1s..retention.certificates (%s)", r.OCSPResponses, r.Certificates)
	case r.AuthzReports < time.Hour || r.AuthzReports > 87600*time.Hour:
		return fieldErr("retention.authz_reports", "%s is outside 1h..87600h", r.AuthzReports)
	case r.Interval < 10*time.Second || r.Interval > 24*time.Hour:
		return fieldErr("retention.interval", "%s is outside 10s..24h", r.Interval)
	case r.BatchSize < 1 || r.BatchSize > 10000:
		return fieldErr("retention.batch_size", "%d is outside 1..10000", r.BatchSize)
	case r.BatchPause < 0 || r.BatchPause > 10*time.Second:
		return fieldErr("retention.batch_pause", "%s is outside 0..10s", r.BatchPause)
	case r.MaxRun < time.Second || r.MaxRun > r.Interval:
		return fieldErr("retention.max_run", "%s is outside 1s..retention.interval (%s)", r.MaxRun, r.Interval)
	}
	return nil
}
