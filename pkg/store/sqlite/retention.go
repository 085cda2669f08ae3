package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func checkPrune(what string, before time.Time, limit int) error {
	if before.IsZero() || limit <= 0 {
		return fmt.Errorf("sqlite: %s: want a cut-off and a positive limit: %w", what, store.ErrInvalidQuery)
	}
	return nil
}

// PruneOCSPResponses deletes one batch of responses of certificates
// expired before `before` (index ocsp_responses_cert_expiry_idx).
func (s *Store) PruneOCSPResponses(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := checkPrune("prune OCSP responses", before, limit); err != nil {
		return 0, err
	}
	res, err := s.w.ExecContext(ctx, `
		DELETE FROM ocsp_responses WHERE serial IN (
			SELECT serial FROM ocsp_responses WHERE cert_not_after < ?
			ORDER BY cert_not_after LIMIT ?)`, before.UnixMicro(), limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune OCSP responses: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune OCSP responses: %w", mapErr(err))
	}
	return n, nil
}

// PruneExpiredCertificates deletes one batch of certificates expired before
// `before` and their leftover OCSP responses in one write transaction
// (index certificates_expiry_idx): the write lock is held for one batch.
func (s *Store) PruneExpiredCertificates(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := checkPrune("prune certificates", before, limit); err != nil {
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

// PruneEndedHolds deletes one batch of holds that ended before `before`
// (indexes identity_holds_released_idx and identity_holds_until_idx).
func (s *Store) PruneEndedHolds(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := checkPrune("prune holds", before, limit); err != nil {
		return 0, err
	}
	b := before.UnixMicro()
	res, err := s.w.ExecContext(ctx, `
		DELETE FROM identity_holds WHERE id IN (SELECT id FROM (
			SELECT id FROM (SELECT id FROM identity_holds WHERE released_at IS NOT NULL AND released_at < ? LIMIT ?)
			UNION ALL
			SELECT id FROM (SELECT id FROM identity_holds WHERE released_at IS NULL AND until < ? LIMIT ?)) LIMIT ?)`,
		b, limit, b, limit, limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune holds: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune holds: %w", mapErr(err))
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

// PruneAuthzReportCounts deletes one batch of authorization report
// aggregates of minutes before `before` (index
// authz_report_counts_minute_idx, migration 15).
func (s *Store) PruneAuthzReportCounts(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := checkPrune("prune authz reports", before, limit); err != nil {
		return 0, err
	}
	res, err := s.w.ExecContext(ctx, `
		DELETE FROM authz_report_counts WHERE rowid IN (
			SELECT rowid FROM authz_report_counts WHERE minute < ? ORDER BY minute LIMIT ?)`,
		before.UnixMicro(), limit)
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune authz reports: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune authz reports: %w", mapErr(err))
	}
	return n, nil
}
