package sqlite

import "context"

// ExecRaw runs a statement directly, bypassing the Store API, so that the
// conformance suite can check that the database itself refuses tampering.
// It exists only in test builds.
func (s *Store) ExecRaw(ctx context.Context, query string) error {
	_, err := s.w.ExecContext(ctx, query)
	return mapErr(err)
}
