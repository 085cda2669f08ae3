package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// markWrite is a token mark's write, for a group transaction (marks.go).
func (s *Store) markWrite(key string, expiresAt, now time.Time) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		res, err := s.txExec(ctx, tx, markTokenSQL,
			key, expiresAt.UnixMicro(), now.UnixMicro())
		if err != nil {
			return fmt.Errorf("sqlite: mark token used: %w", mapErr(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("sqlite: token already used: %w", store.ErrConflict)
		}
		return nil
	}
}

// PruneUsedTokens deletes token records expired at or before now (index
// used_tokens_expiry_idx). It is a write of the group commit, so the marks
// answered before it are written first and pruned alike when expired.
func (s *Store) PruneUsedTokens(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.grouped(ctx, "prune used tokens", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM used_tokens WHERE expires_at <= ?`, now.UnixMicro())
		if err != nil {
			return fmt.Errorf("sqlite: prune used tokens: %w", mapErr(err))
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: prune used tokens: %w", mapErr(err))
		}
		return nil
	})
	return n, err
}
