package sqlstore

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// AuditHead returns the last audit entry; see store.AuditCheckpointStore.
// It reads audit_log's primary key backwards.
func (o *Ops) AuditHead(ctx context.Context) (store.AuditEntry, error) {
	var e store.AuditEntry
	var at NullTime
	var details []byte
	err := o.r.QueryRow(ctx, `
		SELECT seq, time, actor, action, target, decision, reason, policy_version,
			request_id, details, prev_hash, hash
		FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Target,
		&e.Decision, &e.Reason, &e.PolicyVersion, &e.RequestID, &details, &e.PrevHash, &e.Hash)
	switch {
	case o.d.IsNoRows(err):
		return store.AuditEntry{}, o.errorf("audit head: %w", store.ErrNotFound)
	case err != nil:
		return store.AuditEntry{}, o.errorf("audit head: %w", o.d.MapErr(err))
	}
	e.Time = at.Time
	e.Details = details
	return e, nil
}

// InsertAuditCheckpoint stores a signed checkpoint; see
// store.AuditCheckpointStore. The insert runs in a transaction, so that
// SQLite commits it before its RETURNING row is read.
func (o *Ops) InsertAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) (store.AuditCheckpoint, error) {
	c.Time = c.Time.UTC().Truncate(time.Microsecond)
	var hash any
	if c.Hash != nil {
		hash = c.Hash
	}
	err := o.w.InTx(ctx, func(tx Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO audit_checkpoints (seq, hash, time, kind, key_id, signature)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			c.Seq, hash, o.d.Time(c.Time), string(c.Kind), c.KeyID, c.Signature).Scan(&c.ID) // NOT NULL: a zero time is stored as such
		if err != nil {
			return o.errorf("insert audit checkpoint: %w", o.d.MapErr(err))
		}
		return nil
	})
	if err != nil {
		return store.AuditCheckpoint{}, err
	}
	return c, nil
}

const checkpointColumns = `id, seq, hash, time, kind, key_id, signature`

func scanCheckpoint(r Row) (store.AuditCheckpoint, error) {
	var c store.AuditCheckpoint
	var kind string
	var at NullTime
	if err := r.Scan(&c.ID, &c.Seq, &c.Hash, &at, &kind, &c.KeyID, &c.Signature); err != nil {
		return store.AuditCheckpoint{}, err
	}
	c.Kind = store.CheckpointKind(kind)
	c.Time = at.Time
	return c, nil
}

// AuditCheckpoints lists checkpoints in ID order (the primary key); see
// store.AuditCheckpointStore.
func (o *Ops) AuditCheckpoints(ctx context.Context, afterID int64, limit int) ([]store.AuditCheckpoint, error) {
	if limit <= 0 {
		limit = 100
	}
	list, err := queryAll(ctx, o, o.r, scanCheckpoint, `SELECT `+checkpointColumns+`
		FROM audit_checkpoints WHERE id > $1 ORDER BY id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, o.errorf("read audit checkpoints: %w", err)
	}
	return list, nil
}

// LatestAuditCheckpoint uses index audit_checkpoints_time; see
// store.AuditCheckpointStore.
func (o *Ops) LatestAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error) {
	c, err := scanCheckpoint(o.r.QueryRow(ctx, `SELECT `+checkpointColumns+`
		FROM audit_checkpoints ORDER BY time DESC, id DESC LIMIT 1`))
	switch {
	case o.d.IsNoRows(err):
		return store.AuditCheckpoint{}, o.errorf("latest audit checkpoint: %w", store.ErrNotFound)
	case err != nil:
		return store.AuditCheckpoint{}, o.errorf("latest audit checkpoint: %w", o.d.MapErr(err))
	}
	return c, nil
}
