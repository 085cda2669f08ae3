package sqlstore

import (
	"context"
	"time"
)

// The prune batches written once; RetentionStats stays with each store:
// Postgres reads its catalog's estimates, SQLite counts and reads dbstat.

// PruneOCSPResponses deletes one batch of responses of certificates
// expired before `before` (index ocsp_responses_cert_expiry_idx). On
// Postgres rows locked by a concurrent writer are skipped, not waited for.
func (o *Ops) PruneOCSPResponses(ctx context.Context, before time.Time, limit int) (int64, error) {
	return o.pruneBatch(ctx, "prune OCSP responses", before, limit,
		`DELETE FROM ocsp_responses WHERE `+o.d.InBatch("serial", `
			SELECT serial FROM ocsp_responses WHERE cert_not_after < $1
			ORDER BY cert_not_after LIMIT $2`+o.d.SkipLocked))
}

// PruneExpiredCertificates deletes one batch of certificates expired before
// `before` and their leftover OCSP responses in one short transaction
// (index certificates_expiry_idx; the responses by primary key). On Postgres
// the batch is locked with SKIP LOCKED, so a revocation or renewal in
// progress is never waited for; on SQLite the write lock is held for one
// batch.
func (o *Ops) PruneExpiredCertificates(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := o.d.CheckPrune("prune certificates", before, limit); err != nil {
		return 0, err
	}
	var n int64
	err := o.w.InTx(ctx, func(tx Tx) error {
		serials, err := queryAll(ctx, o, tx, scanString, `
			SELECT serial FROM certificates WHERE not_after < $1
			ORDER BY not_after LIMIT $2`+o.d.SkipLocked, o.time(before), limit)
		if err != nil {
			return o.errorf("prune certificates: %w", err)
		}
		if len(serials) == 0 {
			return nil
		}
		batch := o.d.Array(serials)
		lineages, err := queryAll(ctx, o, tx, scanString, `SELECT DISTINCT lineage FROM certificates
			WHERE `+o.d.InArray("serial", "$1")+` AND lineage <> ''`, batch)
		if err != nil {
			return o.errorf("prune certificates' lineages: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM ocsp_responses WHERE `+o.d.InArray("serial", "$1"), batch); err != nil {
			return o.errorf("prune certificates' OCSP responses: %w", o.d.MapErr(err))
		}
		if n, err = tx.Exec(ctx, `DELETE FROM certificates WHERE `+o.d.InArray("serial", "$1"), batch); err != nil {
			return o.errorf("prune certificates: %w", o.d.MapErr(err))
		}
		// A lineage's enrollment provenance (migration 14) goes with its
		// last certificate; certificates_lineage_idx answers NOT EXISTS.
		// The batch's lineages are read from the rows just deleted, so a
		// lineage that still renews keeps its row.
		if _, err := tx.Exec(ctx, `
			DELETE FROM lineages
			WHERE `+o.d.InArray("lineage", "$1")+`
			  AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.lineage = lineages.lineage)`, o.d.Array(lineages)); err != nil {
			return o.errorf("prune lineages: %w", o.d.MapErr(err))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// scanString reads a one-column text row.
func scanString(row Row) (string, error) {
	var s string
	err := row.Scan(&s)
	return s, err
}

// PruneEndedHolds deletes one batch of holds that ended before `before`
// (indexes identity_holds_released_idx and identity_holds_until_idx).
func (o *Ops) PruneEndedHolds(ctx context.Context, before time.Time, limit int) (int64, error) {
	return o.pruneBatch(ctx, "prune holds", before, limit,
		`DELETE FROM identity_holds WHERE `+o.d.InBatch("id", `
			SELECT id FROM (SELECT id FROM identity_holds WHERE released_at IS NOT NULL AND released_at < $1 LIMIT $2) r
			UNION ALL
			SELECT id FROM (SELECT id FROM identity_holds WHERE released_at IS NULL AND until < $1 LIMIT $2) u
			LIMIT $2`))
}

// PruneAuthzReportCounts deletes one batch of authorization report
// aggregates of minutes before `before` (index
// authz_report_counts_minute_idx, migration 15).
func (o *Ops) PruneAuthzReportCounts(ctx context.Context, before time.Time, limit int) (int64, error) {
	return o.pruneBatch(ctx, "prune authz reports", before, limit,
		`DELETE FROM authz_report_counts WHERE `+o.d.InBatch(o.d.RowID, `
			SELECT `+o.d.RowID+` FROM authz_report_counts WHERE minute < $1 ORDER BY minute LIMIT $2`))
}

// pruneBatch runs one batch delete whose $1 is the cut-off and $2 the limit,
// and returns how many rows it deleted.
func (o *Ops) pruneBatch(ctx context.Context, what string, before time.Time, limit int, del string) (int64, error) {
	if err := o.d.CheckPrune(what, before, limit); err != nil {
		return 0, err
	}
	n, err := o.w.Exec(ctx, del, o.time(before), limit)
	if err != nil {
		return 0, o.errorf("%s: %w", what, o.d.MapErr(err))
	}
	return n, nil
}
