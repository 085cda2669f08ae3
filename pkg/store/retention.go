package store

import (
	"context"
	"time"
)

// RetentionStore deletes what has outlived its retention, in small batches
// (one short transaction each, so that issuance never waits long behind a
// prune), and reports what the database holds. The audit log is never
// touched here.
type RetentionStore interface {
	// PruneOCSPResponses deletes up to limit stored OCSP responses of
	// certificates with NotAfter < before, oldest first, and returns how
	// many it deleted (fewer than limit: nothing more is due).
	// ErrInvalidQuery for a zero before or limit <= 0.
	PruneOCSPResponses(ctx context.Context, before time.Time, limit int) (int64, error)
	// PruneExpiredCertificates deletes up to limit certificates with
	// NotAfter < before, revoked or not, oldest NotAfter first, together
	// with any OCSP response still stored for them, in one transaction, and
	// returns how many certificates it deleted. Rows another transaction
	// holds locked are skipped until a later batch. Certificates that
	// renewed or were renewed from a deleted one keep their RenewedFrom,
	// SupersededBy and Lineage serials. ErrInvalidQuery for a zero before
	// or limit <= 0.
	PruneExpiredCertificates(ctx context.Context, before time.Time, limit int) (int64, error)
	// PruneEndedHolds deletes up to limit identity holds that ended before
	// `before`: released before it, or never released and Until < before.
	// Holds in force are never deleted as long as before is not after now.
	// ErrInvalidQuery for a zero before or limit <= 0.
	PruneEndedHolds(ctx context.Context, before time.Time, limit int) (int64, error)
	// PruneAuthzReportCounts deletes up to limit per-minute authorization
	// report aggregates of minutes before `before`, oldest first, and
	// returns how many it deleted. ErrInvalidQuery for a zero before or
	// limit <= 0.
	PruneAuthzReportCounts(ctx context.Context, before time.Time, limit int) (int64, error)
	// RetentionStats reports the oldest retained certificate and the size
	// of the tables that grow with use (RetentionTables). Row counts may be
	// estimates on large databases (Postgres statistics).
	RetentionStats(ctx context.Context) (RetentionStats, error)
}

// RetentionTables are the tables RetentionStats reports, in that order.
var RetentionTables = []string{"certificates", "ocsp_responses", "lineages", "audit_log", "used_tokens", "dashboard_sessions", "identity_holds", "authz_report_counts"}

// RetentionStats is what the database holds, for metrics.
type RetentionStats struct {
	// OldestNotAfter is the earliest NotAfter of the retained certificates;
	// zero when there is none.
	OldestNotAfter time.Time
	// Tables has one entry per RetentionTables name, in that order.
	Tables []TableSize
}

// TableSize is one table's size.
type TableSize struct {
	Table string
	// Rows is the row count: exact on SQLite, the planner's estimate on
	// Postgres (kept current by autovacuum and ANALYZE).
	Rows int64
	// Bytes is the table's size with its indexes (and TOAST on Postgres),
	// -1 when the database cannot tell.
	Bytes int64
}
