package sqlite

// The prune batches are written once in pkg/store/sqlstore.

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/workload-ca/workload-ca/pkg/store"
)

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
