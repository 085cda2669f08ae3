package sqlite

import (
	"database/sql"

	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
)

// scanner is what a single row (*sql.Row) and a result set (*sql.Rows) have
// in common.
type scanner = sqlstore.Row

// collectRows reads every row of rows with scan and closes rows, as
// pgx.CollectRows does for the Postgres store (sqlstore.Collect). It returns
// nil for no rows, and the first error of scan or of the iteration
// unwrapped: mapping it (mapErr) and naming the query are the caller's.
func collectRows[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	return sqlstore.Collect(sqlRows{rows}, scan)
}
