package sqlite

import "database/sql"

// scanner is what a single row (*sql.Row) and a result set (*sql.Rows) have
// in common.
type scanner interface{ Scan(dest ...any) error }

// collectRows reads every row of rows with scan and closes rows, as
// pgx.CollectRows does for the Postgres store. It returns nil for no rows,
// and the first error of scan or of the iteration unwrapped: mapping it
// (mapErr) and naming the query are the caller's.
func collectRows[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var list []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return list, nil
}
