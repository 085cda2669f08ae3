package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func checkPrune(what string, before time.Time, limit int) error {
	if before.IsZero() || limit <= 0 {
		return fmt.Errorf("postgres: %s: want a cut-off and a positive limit: %w", what, store.ErrInvalidQuery)
	}
	return nil
}

// PruneOCSPResponses deletes one batch of responses of certificates
// expired before `before` (index ocsp_responses_cert_expiry_idx). Rows
// locked by a concurrent writer are skipped, not waited for.
func (s *Store) PruneOCSPResponses(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := checkPrune("prune OCSP responses", before, limit); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM ocsp_responses WHERE serial = ANY (ARRAY(
			SELECT serial FROM ocsp_responses WHERE cert_not_after < $1
			ORDER BY cert_not_after LIMIT $2 FOR UPDATE SKIP LOCKED))`,
		ts(before), limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune OCSP responses: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

// PruneExpiredCertificates deletes one batch of certificates expired before
// `before` and their leftover OCSP responses in one short transaction
// (index certificates_expiry_idx; the responses by primary key). The batch
// is locked with SKIP LOCKED, so a revocation or renewal in progress is
// never waited for.
func (s *Store) PruneExpiredCertificates(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := checkPrune("prune certificates", before, limit); err != nil {
		return 0, err
	}
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var serials []string
		if err := tx.QueryRow(ctx, `
			SELECT coalesce(array_agg(serial), '{}') FROM (
				SELECT serial FROM certificates WHERE not_after < $1
				ORDER BY not_after LIMIT $2 FOR UPDATE SKIP LOCKED) b`,
			ts(before), limit).Scan(&serials); err != nil {
			return fmt.Errorf("postgres: prune certificates: %w", mapErr(err))
		}
		if len(serials) == 0 {
			return nil
		}
		var lineages []string
		if err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT lineage), '{}') FROM certificates WHERE serial = ANY ($1) AND lineage <> ''`,
			serials).Scan(&lineages); err != nil {
			return fmt.Errorf("postgres: prune certificates' lineages: %w", mapErr(err))
		}
		if _, err := tx.Exec(ctx, `DELETE FROM ocsp_responses WHERE serial = ANY ($1)`, serials); err != nil {
			return fmt.Errorf("postgres: prune certificates' OCSP responses: %w", mapErr(err))
		}
		tag, err := tx.Exec(ctx, `DELETE FROM certificates WHERE serial = ANY ($1)`, serials)
		if err != nil {
			return fmt.Errorf("postgres: prune certificates: %w", mapErr(err))
		}
		n = tag.RowsAffected()
		// A lineage's enrollment provenance (migration 14) goes with its
		// last certificate; certificates_lineage_idx answers NOT EXISTS.
		// The batch's lineages are read from the rows just deleted, so a
		// lineage that still renews keeps its row.
		if _, err := tx.Exec(ctx, `
			DELETE FROM lineages l
			WHERE l.lineage = ANY ($1)
			  AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.lineage = l.lineage)`, lineages); err != nil {
			return fmt.Errorf("postgres: prune lineages: %w", mapErr(err))
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
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM identity_holds WHERE id = ANY (ARRAY(
			(SELECT id FROM identity_holds WHERE released_at IS NOT NULL AND released_at < $1 LIMIT $2)
			UNION ALL
			(SELECT id FROM identity_holds WHERE released_at IS NULL AND until < $1 LIMIT $2)
			LIMIT $2))`,
		ts(before), limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune holds: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}

// exactCountBelow is the planner estimate under which RetentionStats
// counts a table's rows exactly.
const exactCountBelow = 100_000

// RetentionStats reads the oldest NotAfter (certificates_expiry_idx) and
// each table's planner row estimate and total size from the catalog; only
// tables estimated under exactCountBelow rows are counted.
func (s *Store) RetentionStats(ctx context.Context) (store.RetentionStats, error) {
	var st store.RetentionStats
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(not_after) FROM certificates`).Scan(&oldest); err != nil {
		return st, fmt.Errorf("postgres: retention stats: %w", mapErr(err))
	}
	st.OldestNotAfter = fromTS(oldest)
	for _, table := range store.RetentionTables {
		ts := store.TableSize{Table: table}
		var rows float64
		// reltuples is -1 for a table never vacuumed or analyzed.
		if err := s.pool.QueryRow(ctx, `
			SELECT greatest(c.reltuples, 0)::float8, pg_total_relation_size(c.oid)
			FROM pg_class c WHERE c.oid = to_regclass($1)`, table).Scan(&rows, &ts.Bytes); err != nil {
			return st, fmt.Errorf("postgres: retention stats of %s: %w", table, mapErr(err))
		}
		ts.Rows = int64(rows)
		if rows < exactCountBelow {
			// Small (or never analyzed) tables are counted exactly: cheap,
			// and the estimate is coarsest there.
			if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&ts.Rows); err != nil {
				return st, fmt.Errorf("postgres: retention stats of %s: %w", table, mapErr(err))
			}
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
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM authz_report_counts WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM authz_report_counts WHERE minute < $1 ORDER BY minute LIMIT $2))`,
		ts(before), limit)
	if err != nil {
		return 0, fmt.Errorf("postgres: prune authz reports: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}
