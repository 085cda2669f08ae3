package postgres

// PruneOCSPResponses, PruneEndedHolds and PruneAuthzReportCounts are
// written once in pkg/store/sqlstore.

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// PruneExpiredCertificates deletes one batch of certificates expired before
// `before` and their leftover OCSP responses in one short transaction
// (index certificates_expiry_idx; the responses by primary key). The batch
// is locked with SKIP LOCKED, so a revocation or renewal in progress is
// never waited for.
func (s *Store) PruneExpiredCertificates(ctx context.Context, before time.Time, limit int) (int64, error) {
	if err := dialect.CheckPrune("prune certificates", before, limit); err != nil {
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
