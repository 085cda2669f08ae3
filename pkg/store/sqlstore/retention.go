package sqlstore

import (
	"context"
	"time"
)

// The prune batches written once; PruneExpiredCertificates and
// RetentionStats stay with each store: Postgres passes the batch's serials
// as arrays and reads the catalog, SQLite re-selects the batch and reads
// dbstat.

// PruneOCSPResponses deletes one batch of responses of certificates
// expired before `before` (index ocsp_responses_cert_expiry_idx). On
// Postgres rows locked by a concurrent writer are skipped, not waited for.
func (o *Ops) PruneOCSPResponses(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := o.d.CheckPrune("prune OCSP responses", before, limit); err != nil {
		return 0, err
	}
	n, err := o.w.Exec(ctx, `DELETE FROM ocsp_responses WHERE `+o.d.InBatch("serial", `
			SELECT serial FROM ocsp_responses WHERE cert_not_after < $1
			ORDER BY cert_not_after LIMIT $2`+o.d.SkipLocked),
		o.time(before), limit)
	if err != nil {
		return 0, o.errorf("prune OCSP responses: %w", o.d.MapErr(err))
	}
	return n, nil
}

// PruneEndedHolds deletes one batch of holds that ended before `before`
// (indexes identity_holds_released_idx and identity_holds_until_idx).
func (o *Ops) PruneEndedHolds(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := o.d.CheckPrune("prune holds", before, limit); err != nil {
		return 0, err
	}
	n, err := o.w.Exec(ctx, `DELETE FROM identity_holds WHERE `+o.d.InBatch("id", `
			SELECT id FROM (SELECT id FROM identity_holds WHERE released_at IS NOT NULL AND released_at < $1 LIMIT $2) r
			UNION ALL
			SELECT id FROM (SELECT id FROM identity_holds WHERE released_at IS NULL AND until < $1 LIMIT $2) u
			LIMIT $2`),
		o.time(before), limit)
	if err != nil {
		return 0, o.errorf("prune holds: %w", o.d.MapErr(err))
	}
	return n, nil
}

// PruneAuthzReportCounts deletes one batch of authorization report
// aggregates of minutes before `before` (index
// authz_report_counts_minute_idx, migration 15).
func (o *Ops) PruneAuthzReportCounts(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := o.d.CheckPrune("prune authz reports", before, limit); err != nil {
		return 0, err
	}
	n, err := o.w.Exec(ctx, `DELETE FROM authz_report_counts WHERE `+o.d.InBatch(o.d.RowID, `
			SELECT `+o.d.RowID+` FROM authz_report_counts WHERE minute < $1 ORDER BY minute LIMIT $2`),
		o.time(before), limit)
	if err != nil {
		return 0, o.errorf("prune authz reports: %w", o.d.MapErr(err))
	}
	return n, nil
}
