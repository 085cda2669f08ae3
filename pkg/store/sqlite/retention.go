package sqlite

// PruneOCSPResponses, PruneEndedHolds and PruneAuthzReportCounts are
// written once in pkg/store/sqlstore.

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// PruneExpiredCertificates deletes one batch of certificates expired before
// `before` and their leftover OCSP responses in one write transaction
// (index certificates_expiry_idx): the write lock is held for one batch.
func (s *Store) PruneExpiredCertificates(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := dialect.CheckPrune("prune certificates", before, limit); err != nil {
		return 0, err
	}
	const batch = `SELECT serial FROM certificates WHERE not_after < ? ORDER BY not_after LIMIT ?`
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The batch's lineages, so that a lineage's enrollment provenance
		// (migration 14) goes with its last certificate.
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS prune_lineages (lineage TEXT PRIMARY KEY)`); err != nil {
			return fmt.Errorf("sqlite: prune certificates' lineages: %w", mapErr(err))
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM prune_lineages`); err != nil {
			return fmt.Errorf("sqlite: prune certificates' lineages: %w", mapErr(err))
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO prune_lineages (lineage)
			SELECT lineage FROM certificates WHERE serial IN (`+batch+`) AND lineage <> ''`, before.UnixMicro(), limit); err != nil {
			return fmt.Errorf("sqlite: prune certificates' lineages: %w", mapErr(err))
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM ocsp_responses WHERE serial IN (`+batch+`)`, before.UnixMicro(), limit); err != nil {
			return fmt.Errorf("sqlite: prune certificates' OCSP responses: %w", mapErr(err))
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM certificates WHERE serial IN (`+batch+`)`, before.UnixMicro(), limit)
		if err != nil {
			return fmt.Errorf("sqlite: prune certificates: %w", mapErr(err))
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: prune certificates: %w", mapErr(err))
		}
		// certificates_lineage_idx answers NOT EXISTS.
		if _, err := tx.ExecContext(ctx, `
			DELETE FROM lineages WHERE lineage IN (SELECT lineage FROM prune_lineages)
			  AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.lineage = lineages.lineage)`); err != nil {
			return fmt.Errorf("sqlite: prune lineages: %w", mapErr(err))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// RetentionStats reads the oldest NotAfter (certificates_expiry_idx),
// counts each table's rows, and sums its and its indexes' pages from the
// dbstat table when the build has it (Bytes -1 otherwise).
func (s *Store) RetentionStats(ctx context.Context) (store.RetentionStats, error) {
	var st store.RetentionStats
	var oldest sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT min(not_after) FROM certificates`).Scan(&oldest); err != nil {
		return st, fmt.Errorf("sqlite: retention stats: %w", mapErr(err))
	}
	st.OldestNotAfter = fromUS(oldest)
	for _, table := range store.RetentionTables {
		ts := store.TableSize{Table: table, Bytes: -1}
		// table is one of the fixed names of store.RetentionTables.
		if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&ts.Rows); err != nil {
			return st, fmt.Errorf("sqlite: retention stats of %s: %w", table, mapErr(err))
		}
		var bytes sql.NullInt64
		err := s.r.QueryRowContext(ctx, `
			SELECT sum(pgsize) FROM dbstat
			WHERE name = ?1 OR name IN (SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?1)`,
			table).Scan(&bytes)
		if err == nil && bytes.Valid {
			ts.Bytes = bytes.Int64
		}
		st.Tables = append(st.Tables, ts)
	}
	return st, nil
}
