package postgres

import (
	"context"

	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
)

// ExecRaw runs a statement directly, bypassing the Store API, so that the
// conformance suite can check that the database itself refuses tampering.
// It exists only in test builds.
func (s *Store) ExecRaw(ctx context.Context, query string) error {
	_, err := s.pool.Exec(ctx, query)
	return mapErr(err)
}

// ShowSetting reads a session setting on one of the pool's connections.
func (s *Store) ShowSetting(ctx context.Context, name string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v)
	return v, mapErr(err)
}

// ExecAllForTest runs the shared operations' ExecAll on the pool. It exists
// only in test builds.
func (s *Store) ExecAllForTest(ctx context.Context, stmts []sqlstore.Stmt) ([]int64, error) {
	return pgWriter{pgQuerier{s.pool}, s}.ExecAll(ctx, stmts)
}
