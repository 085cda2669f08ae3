package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
)

// The operations shared with the SQLite store (issuers, rotation, JWT keys,
// bundle versions, holds, sessions, authorization overrides, audit
// checkpoints, the certificate list, inventory stats, denials, CRL numbers
// and storage, RevokeCertificate and RevokeMany, the prune batches, audit prefix removal, the
// certificate status and OCSP responses and responders) are
// written once in pkg/store/sqlstore; Store embeds them
// (ops) over the adapters below, which keep pgx native.

type ops = sqlstore.Ops

// dialect is what Postgres spells its own way.
var dialect = sqlstore.Dialect{
	Name:                  "postgres",
	Time:                  func(t time.Time) any { return t.UTC().Truncate(time.Microsecond) },
	MapErr:                mapErr,
	IsNoRows:              func(err error) bool { return errors.Is(err, pgx.ErrNoRows) },
	IsForeignKeyViolation: isForeignKeyViolation,
	ForUpdate:             " FOR UPDATE",
	ForShare:              " FOR SHARE",
	Least:                 "LEAST",
	Greatest:              "GREATEST",
	AddMicros: func(t, micros string) string {
		return fmt.Sprintf("%s::timestamptz + %s * interval '1 microsecond'", t, micros)
	},
	// spiffe_id is COLLATE "C", so LIKE 'p%' is a range of its index.
	HasPrefix:     func(column, param string) string { return column + " LIKE " + param },
	PrefixPattern: func(prefix string) string { return likeEscaper.Replace(prefix) + "%" },
	Text:          func(param string) string { return param + `::text COLLATE "C"` },
	CertColumns:   certColumns,
	ScanCert:      func(row sqlstore.Row, extra ...any) (store.Certificate, error) { return scanCert(row, extra...) },
	InBatch: func(column, subquery string) string {
		return column + " = ANY (ARRAY(" + subquery + "))"
	},
	SkipLocked: " FOR UPDATE SKIP LOCKED",
	InArray:    func(column, param string) string { return column + " = ANY (" + param + ")" },
	Array: func(v []string) any {
		if v == nil {
			return []string{}
		}
		return v
	},
	RowID: "ctid",
	// The audit_log_guard trigger reads the transaction-local setting.
	ArchiveWindow: func(through int64) (open, close sqlstore.Stmt) {
		return sqlstore.Stmt{Query: `SELECT set_config('workload_ca.audit_archive_through', $1, true)`, Args: []any{strconv.FormatInt(through, 10)}},
			sqlstore.Stmt{Query: `SELECT set_config('workload_ca.audit_archive_through', '', true)`}
	},
}

// likeEscaper quotes LIKE's wildcards so that a prefix matches literally.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// newOps builds s's shared operations: reads and writes on the pool.
func newOps(s *Store) *ops {
	q := pgQuerier{s.pool}
	return sqlstore.New(dialect, q, pgWriter{q, s})
}

// pgxQuerier is what *pgxpool.Pool and pgx.Tx share.
type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgQuerier is a sqlstore.Querier over a pool or a transaction.
type pgQuerier struct{ q pgxQuerier }

func (p pgQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := p.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (p pgQuerier) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return p.q.QueryRow(ctx, query, args...)
}

func (p pgQuerier) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := p.q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// pgWriter runs transactions with Store.inTx.
type pgWriter struct {
	pgQuerier
	s *Store
}

func (w pgWriter) InTx(ctx context.Context, fn func(sqlstore.Tx) error) error {
	return w.s.inTx(ctx, func(tx pgx.Tx) error { return fn(pgTx{pgQuerier{tx}, tx}) })
}

// ExecAll sends stmts as one pipeline with a single Sync on the pool, which
// Postgres runs as one implicit transaction (a failing statement rolls back
// all of them): one round trip.
func (w pgWriter) ExecAll(ctx context.Context, stmts []sqlstore.Stmt) ([]int64, error) {
	if len(stmts) == 0 {
		return []int64{}, nil
	}
	batch := &pgx.Batch{}
	for _, st := range stmts {
		batch.Queue(st.Query, st.Args...)
	}
	br := w.s.pool.SendBatch(ctx, batch)
	defer br.Close()
	counts := make([]int64, 0, len(stmts))
	for range stmts {
		tag, err := br.Exec()
		if err != nil {
			return counts, mapErr(err)
		}
		counts = append(counts, tag.RowsAffected())
	}
	if err := br.Close(); err != nil {
		return counts, mapErr(err)
	}
	return counts, nil
}

// pgTx is a sqlstore.Tx.
type pgTx struct {
	pgQuerier
	tx pgx.Tx
}

// lockKeys are the pg_advisory_xact_lock keys of the shared locks.
var lockKeys = map[sqlstore.Lock]int64{
	sqlstore.LockRotation:     RotationLockKey,
	sqlstore.LockAuditArchive: auditArchiveLockKey,
}

// auditArchiveLockKey is the pg_advisory_xact_lock key that serialises
// RemoveAuditPrefix calls (not appends: AuditLockKey).
const auditArchiveLockKey int64 = 0x7763615f61726368 // "wca_arch"

// RotationLockKey is the pg_advisory_xact_lock key that serialises
// RecordRotation and AbandonIssuers across replicas (sqlstore.LockRotation).
const RotationLockKey int64 = 0x7763615f726f7461 // "wca_rota"

func (t pgTx) Lock(ctx context.Context, l sqlstore.Lock) error {
	key, ok := lockKeys[l]
	if !ok {
		return fmt.Errorf("no advisory lock key for lock %d", l)
	}
	_, err := t.tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key)
	return err
}

func (t pgTx) Batch(ctx context.Context, stmts []sqlstore.Stmt) error {
	if len(stmts) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, st := range stmts {
		batch.Queue(st.Query, st.Args...)
	}
	return t.tx.SendBatch(ctx, batch).Close()
}

func (t pgTx) AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error) {
	return appendAudit(ctx, t.tx, e)
}
