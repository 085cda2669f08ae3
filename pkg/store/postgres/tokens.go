package postgres

import (
	"context"
	"fmt"
	"time"
)

// MarkTokenUsed records a used enrollment token until expiresAt;
// store.ErrConflict if it is already recorded and unexpired at now. The
// upsert replaces only an expired leftover, so of concurrent callers exactly
// one inserts and the others see a row they may not replace. Marks that
// arrive together are written by one statement (markgroup.go).
//
// The mark commits synchronously, before anything is signed. Issue 20 tried
// committing it with synchronous_commit off (a later synchronous commit of
// the certificate flushes the WAL past it) and dropped it: that holds only
// within one WAL history. A crash of the database before the WAL writer
// flushed the mark, or a failover to a standby that never received it, loses
// the mark while the enrollment goes on, records its certificate on the
// recovered or promoted server and returns it: the token could be used
// again.
//
// If ctx ends while the mark's group is in flight, the mark may still be
// committed: a used token without an enrollment, never the reverse.
func (s *Store) MarkTokenUsed(ctx context.Context, key string, expiresAt, now time.Time) error {
	if expiresAt.IsZero() {
		return fmt.Errorf("postgres: mark token used: no expiry")
	}
	req := &markReq{ctx: ctx, key: key, expiresAt: expiresAt, now: now, done: make(chan error, 1)}
	markErr, err := await(ctx, s.marks, req, req.done, "mark token used")
	if err != nil {
		return err
	}
	return markErr
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
