package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// MarkTokenUsed records a used enrollment token until expiresAt;
// store.ErrConflict if it is already recorded and unexpired at now. The
// upsert replaces only an expired leftover. It goes through the group
// commit (groupcommit.go), and returns once its statement ran in the group's
// transaction, before the commit: the answer is final then, and the mark is
// durable before any certificate recorded after it (see groupcommit.go).
func (s *Store) MarkTokenUsed(ctx context.Context, key string, expiresAt, now time.Time) error {
	return s.enqueue(ctx, "mark token used", &write{ctx: ctx, fn: s.markWrite(key, expiresAt, now), done: make(chan error, 1),
		mark: &tokenMark{key: key, expiresAt: expiresAt, now: now}})
}

// markWrite is MarkTokenUsed's write, for a group transaction.
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
// used_tokens_expiry_idx).
func (s *Store) PruneUsedTokens(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM used_tokens WHERE expires_at <= ?`, now.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune used tokens: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune used tokens: %w", mapErr(err))
	}
	return n, nil
}
