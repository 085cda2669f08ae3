package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// markTokenUsedSQL is MarkTokenUsed's one statement. Its transaction (the
// statement's own) commits with synchronous_commit off, set for that
// transaction only (set_config's is_local): the mark is answered once it is
// in the WAL buffers, without waiting for its own WAL flush. Why that keeps
// the guarantee: the WAL is one sequence, and a flush writes everything
// before the LSN it flushes to. The enrollment records its certificate
// after the mark committed, in a group transaction that commits with the
// session's synchronous_commit (on by default, so it waits for its flush,
// and for synchronous standbys when there are any): once that certificate
// is durable, so is every WAL record before it, the mark's commit among
// them, on the standbys as well. A mark that no
// certificate follows (a denied enrollment) reaches the disk within the WAL
// writer's delay (wal_writer_delay, 200 ms by default); a crash in that
// window loses only the mark of a token that got nothing. Issue 20: the
// flush per mark was one WAL sync per enrollment on top of the group's.
const markTokenUsedSQL = `
	WITH async AS (SELECT set_config('synchronous_commit', 'off', true))
	INSERT INTO used_tokens (key, expires_at) SELECT $1, $2 FROM async
	ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
	WHERE used_tokens.expires_at <= $3`

// MarkTokenUsed records a used enrollment token until expiresAt;
// store.ErrConflict if it is already recorded and unexpired at now. The
// upsert replaces only an expired leftover, so of concurrent callers exactly
// one inserts and the others see a row they may not replace.
func (s *Store) MarkTokenUsed(ctx context.Context, key string, expiresAt, now time.Time) error {
	tag, err := s.pool.Exec(ctx, markTokenUsedSQL, key, ts(expiresAt), ts(now))
	if err != nil {
		return fmt.Errorf("postgres: mark token used: %w", mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: token already used: %w", store.ErrConflict)
	}
	return nil
}

// PruneUsedTokens deletes token records expired at or before now (index
// used_tokens_expiry_idx).
func (s *Store) PruneUsedTokens(ctx context.Context, now time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM used_tokens WHERE expires_at <= $1`, ts(now))
	if err != nil {
		return 0, fmt.Errorf("postgres: prune used tokens: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}
