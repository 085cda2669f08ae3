package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// AuditHead returns the last audit entry; see store.AuditCheckpointStore.
// It reads audit_log's primary key backwards.
func (s *Store) AuditHead(ctx context.Context) (store.AuditEntry, error) {
	var e store.AuditEntry
	var details []byte
	err := s.pool.QueryRow(ctx, `
		SELECT seq, time, actor, action, target, decision, reason, policy_version,
			request_id, details, prev_hash, hash
		FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &e.Target,
		&e.Decision, &e.Reason, &e.PolicyVersion, &e.RequestID, &details, &e.PrevHash, &e.Hash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.AuditEntry{}, fmt.Errorf("postgres: audit head: %w", store.ErrNotFound)
	case err != nil:
		return store.AuditEntry{}, fmt.Errorf("postgres: audit head: %w", mapErr(err))
	}
	e.Time = e.Time.UTC()
	e.Details = details
	return e, nil
}

// InsertAuditCheckpoint stores a signed checkpoint; see
// store.AuditCheckpointStore.
func (s *Store) InsertAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) (store.AuditCheckpoint, error) {
	c.Time = c.Time.UTC().Truncate(time.Microsecond)
	var hash any
	if c.Hash != nil {
		hash = c.Hash
	}
	err := s.pool.QueryRow(ctx, `
		INSERT INTO audit_checkpoints (seq, hash, time, kind, key_id, signature)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		c.Seq, hash, c.Time, string(c.Kind), c.KeyID, c.Signature).Scan(&c.ID)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("postgres: insert audit checkpoint: %w", mapErr(err))
	}
	return c, nil
}

const checkpointColumns = `id, seq, hash, time, kind, key_id, signature`

func scanCheckpoint(r pgx.Row) (store.AuditCheckpoint, error) {
	var c store.AuditCheckpoint
	var kind string
	if err := r.Scan(&c.ID, &c.Seq, &c.Hash, &c.Time, &kind, &c.KeyID, &c.Signature); err != nil {
		return store.AuditCheckpoint{}, err
	}
	c.Kind = store.CheckpointKind(kind)
	c.Time = c.Time.UTC()
	return c, nil
}

// AuditCheckpoints lists checkpoints in ID order (the primary key); see
// store.AuditCheckpointStore.
func (s *Store) AuditCheckpoints(ctx context.Context, afterID int64, limit int) ([]store.AuditCheckpoint, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT `+checkpointColumns+`
		FROM audit_checkpoints WHERE id > $1 ORDER BY id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: read audit checkpoints: %w", mapErr(err))
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AuditCheckpoint, error) {
		return scanCheckpoint(r)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: read audit checkpoints: %w", mapErr(err))
	}
	return list, nil
}

// LatestAuditCheckpoint uses index audit_checkpoints_time; see
// store.AuditCheckpointStore.
func (s *Store) LatestAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error) {
	c, err := scanCheckpoint(s.pool.QueryRow(ctx, `SELECT `+checkpointColumns+`
		FROM audit_checkpoints ORDER BY time DESC, id DESC LIMIT 1`))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.AuditCheckpoint{}, fmt.Errorf("postgres: latest audit checkpoint: %w", store.ErrNotFound)
	case err != nil:
		return store.AuditCheckpoint{}, fmt.Errorf("postgres: latest audit checkpoint: %w", mapErr(err))
	}
	return c, nil
}
