package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// AuditLockKey is the pg_advisory_xact_lock key that serialises audit
// appends across replicas. Other advisory locks in the same database must
// use different keys.
const AuditLockKey int64 = 0x7763615f61756474 // "wca_audt"

// AppendAudit appends one entry to the hash chain; see store.Store.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// appendAudit appends e inside tx. It holds the advisory lock until tx ends,
// so no other transaction reads the same last hash.
func appendAudit(ctx context.Context, tx pgx.Tx, e store.AuditEntry) (store.AuditEntry, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, AuditLockKey); err != nil {
		return store.AuditEntry{}, fmt.Errorf("postgres: lock audit log: %w", mapErr(err))
	}
	var last int64
	var prev []byte
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&last, &prev)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return store.AuditEntry{}, fmt.Errorf("postgres: read audit head: %w", mapErr(err))
	}
	e.Seq = last + 1
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	e.PrevHash = prev
	e.Hash = store.AuditHash(prev, e)
	_, err = tx.Exec(ctx, `
		INSERT INTO audit_log (seq, time, actor, action, target, decision, reason,
			policy_version, request_id, details, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		e.Seq, e.Time, e.Actor, e.Action, e.Target, e.Decision, e.Reason,
		e.PolicyVersion, e.RequestID, []byte(e.Details), e.PrevHash, e.Hash)
	if err != nil {
		return store.AuditEntry{}, fmt.Errorf("postgres: append audit entry: %w", mapErr(err))
	}
	return e, nil
}

// AuditEntries returns entries with Seq > afterSeq in order, at most limit
// (100 when limit <= 0).
func (s *Store) AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]store.AuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `
		SELECT seq, time, actor, action, target, decision, reason, policy_version,
			request_id, details, prev_hash, hash
		FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: read audit log: %w", mapErr(err))
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AuditEntry, error) {
		var e store.AuditEntry
		var details []byte
		err := r.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &e.Target, &e.Decision, &e.Reason,
			&e.PolicyVersion, &e.RequestID, &details, &e.PrevHash, &e.Hash)
		e.Time = e.Time.UTC()
		e.Details = details
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: read audit log: %w", mapErr(err))
	}
	return list, nil
}
