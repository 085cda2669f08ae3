package postgres

// The prune batches are written once in pkg/store/sqlstore.

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

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
