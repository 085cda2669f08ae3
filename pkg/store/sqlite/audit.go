package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// AppendAudit appends one entry to the hash chain; see store.Store.
// It goes through the group commit (groupcommit.go) with the enrollment
// path's other writes.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.grouped(ctx, "append audit entry", func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = s.appendAuditTx(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}

// appendAudit appends e inside tx, a write transaction (BEGIN IMMEDIATE), so
// no other writer reads the same last hash.
func appendAudit(ctx context.Context, tx *sql.Tx, e store.AuditEntry) (store.AuditEntry, error) {
	return appendAuditVia(ctx, e, tx.QueryRowContext, tx.ExecContext)
}

// appendAuditTx is appendAudit with the write connection's prepared
// statements (the enrollment path).
func (s *Store) appendAuditTx(ctx context.Context, tx *sql.Tx, e store.AuditEntry) (store.AuditEntry, error) {
	return appendAuditVia(ctx, e,
		func(ctx context.Context, q string, args ...any) *sql.Row { return s.txQueryRow(ctx, tx, q, args...) },
		func(ctx context.Context, q string, args ...any) (sql.Result, error) {
			return s.txExec(ctx, tx, q, args...)
		})
}

func appendAuditVia(ctx context.Context, e store.AuditEntry,
	queryRow func(ctx context.Context, q string, args ...any) *sql.Row,
	exec func(ctx context.Context, q string, args ...any) (sql.Result, error)) (store.AuditEntry, error) {
	var last int64
	var prev []byte
	err := queryRow(ctx, auditHeadSQL).Scan(&last, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return store.AuditEntry{}, fmt.Errorf("sqlite: read audit head: %w", mapErr(err))
	}
	e.Seq = last + 1
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	e.PrevHash = prev
	e.Hash = store.AuditHash(prev, e)
	var details any
	if e.Details != nil {
		details = []byte(e.Details)
	}
	var prevHash any
	if prev != nil {
		prevHash = prev
	}
	_, err = exec(ctx, insertAuditSQL,
		e.Seq, e.Time.UnixMicro(), e.Actor, e.Action, e.Target, e.Decision, e.Reason,
		e.PolicyVersion, e.RequestID, details, prevHash, e.Hash)
	if err != nil {
		return store.AuditEntry{}, fmt.Errorf("sqlite: append audit entry: %w", mapErr(err))
	}
	return e, nil
}

// AuditEntries returns entries with Seq > afterSeq in order, at most limit
// (100 when limit <= 0).
func (s *Store) AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]store.AuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `
		SELECT seq, time, actor, action, target, decision, reason, policy_version,
			request_id, details, prev_hash, hash
		FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read audit log: %w", mapErr(err))
	}
	list, err := collectRows(rows, func(row scanner) (store.AuditEntry, error) {
		var e store.AuditEntry
		var at int64
		var details []byte
		if err := row.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Target, &e.Decision, &e.Reason,
			&e.PolicyVersion, &e.RequestID, &details, &e.PrevHash, &e.Hash); err != nil {
			return store.AuditEntry{}, err
		}
		e.Time = time.UnixMicro(at).UTC()
		e.Details = details
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: read audit log: %w", mapErr(err))
	}
	return list, nil
}
