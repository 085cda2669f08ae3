package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// AuditHead returns the last audit entry; see store.AuditCheckpointStore.
// It reads audit_log's primary key backwards.
func (s *Store) AuditHead(ctx context.Context) (store.AuditEntry, error) {
	var e store.AuditEntry
	var at int64
	var details []byte
	err := s.r.QueryRowContext(ctx, `
		SELECT seq, time, actor, action, target, decision, reason, policy_version,
			request_id, details, prev_hash, hash
		FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Target,
		&e.Decision, &e.Reason, &e.PolicyVersion, &e.RequestID, &details, &e.PrevHash, &e.Hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.AuditEntry{}, fmt.Errorf("sqlite: audit head: %w", store.ErrNotFound)
	case err != nil:
		return store.AuditEntry{}, fmt.Errorf("sqlite: audit head: %w", mapErr(err))
	}
	e.Time = time.UnixMicro(at).UTC()
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
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO audit_checkpoints (seq, hash, time, kind, key_id, signature)
			VALUES (?, ?, ?, ?, ?, ?)`,
			c.Seq, hash, c.Time.UnixMicro(), string(c.Kind), c.KeyID, c.Signature)
		if err != nil {
			return fmt.Errorf("sqlite: insert audit checkpoint: %w", mapErr(err))
		}
		if c.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("sqlite: insert audit checkpoint: %w", mapErr(err))
		}
		return nil
	})
	if err != nil {
		return store.AuditCheckpoint{}, err
	}
	return c, nil
}

const checkpointColumns = `id, seq, hash, time, kind, key_id, signature`

func scanCheckpoint(r scanner) (store.AuditCheckpoint, error) {
	var c store.AuditCheckpoint
	var kind string
	var at int64
	if err := r.Scan(&c.ID, &c.Seq, &c.Hash, &at, &kind, &c.KeyID, &c.Signature); err != nil {
		return store.AuditCheckpoint{}, err
	}
	c.Kind = store.CheckpointKind(kind)
	c.Time = time.UnixMicro(at).UTC()
	return c, nil
}

// AuditCheckpoints lists checkpoints in ID order (the primary key); see
// store.AuditCheckpointStore.
func (s *Store) AuditCheckpoints(ctx context.Context, afterID int64, limit int) ([]store.AuditCheckpoint, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+checkpointColumns+`
		FROM audit_checkpoints WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read audit checkpoints: %w", mapErr(err))
	}
	list, err := collectRows(rows, scanCheckpoint)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read audit checkpoints: %w", mapErr(err))
	}
	return list, nil
}

// LatestAuditCheckpoint uses index audit_checkpoints_time; see
// store.AuditCheckpointStore.
func (s *Store) LatestAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error) {
	c, err := scanCheckpoint(s.r.QueryRowContext(ctx, `SELECT `+checkpointColumns+`
		FROM audit_checkpoints ORDER BY time DESC, id DESC LIMIT 1`))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.AuditCheckpoint{}, fmt.Errorf("sqlite: latest audit checkpoint: %w", store.ErrNotFound)
	case err != nil:
		return store.AuditCheckpoint{}, fmt.Errorf("sqlite: latest audit checkpoint: %w", mapErr(err))
	}
	return c, nil
}
