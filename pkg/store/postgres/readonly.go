package postgres

import "context"

// OpenReadOnly is Open for tools that only read (`ca audit verify`): every
// session runs with default_transaction_read_only, so Postgres itself
// refuses any write through the returned store.
func OpenReadOnly(ctx context.Context, dsn string) (*Store, error) {
	return open(ctx, dsn, true, nil)
}
