package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
)

// The operations shared with the Postgres store (issuers, rotation, JWT keys,
// bundle versions, holds, sessions, authorization overrides, audit
// checkpoints, the certificate list, inventory stats, denials, CRL numbers
// and storage, RevokeCertificate and RevokeMany, the prune batches, audit prefix removal, the
// certificate status and OCSP responses and responders) are
// written once in pkg/store/sqlstore; Store embeds them
// (ops) over the adapters below: reads on the read-only pool, writes on the
// one write connection.

type ops = sqlstore.Ops

// dialect is what SQLite spells its own way.
var dialect = sqlstore.Dialect{
	Name:                  "sqlite",
	Time:                  func(t time.Time) any { return t.UnixMicro() },
	MapErr:                mapErr,
	IsNoRows:              func(err error) bool { return errors.Is(err, sql.ErrNoRows) },
	IsForeignKeyViolation: isForeignKeyViolation,
	ForUpdate:             "", // the one writer (BEGIN IMMEDIATE) serialises
	ForShare:              "", // likewise
	Least:                 "min",
	Greatest:              "max",
	AddMicros:             func(t, micros string) string { return t + " + " + micros },
	// GLOB, unlike LIKE, is case-sensitive, and a literal prefix uses the index.
	HasPrefix:     func(column, param string) string { return column + " GLOB " + param },
	PrefixPattern: func(prefix string) string { return globEscaper.Replace(prefix) + "*" },
	Text:          func(param string) string { return param },
	CertColumns:   certColumns,
	ScanCert:      scanCertExtra,
	InBatch:       func(column, subquery string) string { return column + " IN (" + subquery + ")" },
	SkipLocked:    "", // the one writer holds no row locks to skip
	InArray: func(column, param string) string {
		return column + " IN (SELECT value FROM json_each(" + param + "))"
	},
	Array: jsonArray,
	RowID: "rowid",
	// The audit_log_no_delete trigger reads audit_archive_window.
	ArchiveWindow: func(through int64) (open, close sqlstore.Stmt) {
		return sqlstore.Stmt{Query: `INSERT INTO audit_archive_window (through) VALUES ($1)`, Args: []any{through}},
			sqlstore.Stmt{Query: `DELETE FROM audit_archive_window`}
	},
}

// globEscaper quotes GLOB's wildcards so that a prefix matches literally.
var globEscaper = strings.NewReplacer(`*`, `[*]`, `?`, `[?]`, `[`, `[[]`)

// newOps builds s's shared operations.
func newOps(s *Store) *ops {
	return sqlstore.New(dialect, preparedReader{sqlQuerier{s.r}, s}, sqlWriter{sqlQuerier{s.w}, s})
}

// preparedReader is the read pool's querier, whose single-row reads use the
// store's cached prepared statements (ActiveHold is on the enrollment path:
// parsing its SQL on every call was measurable).
type preparedReader struct {
	sqlQuerier
	s *Store
}

func (p preparedReader) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return p.s.readRow(ctx, rebind(query), args...)
}

// rebind turns the shared queries' $N placeholders into SQLite's numbered
// ?N, which binds the same argument wherever N repeats. A '$' not followed
// by a digit stays.
func rebind(q string) string {
	if !strings.Contains(q, "$") {
		return q
	}
	b := []byte(q)
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '$' && b[i+1] >= '0' && b[i+1] <= '9' {
			b[i] = '?'
		}
	}
	return string(b)
}

// sqlQuerier is a sqlstore.Querier over a pool or a transaction.
type sqlQuerier struct{ q querier }

func (s sqlQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, rebind(query), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQuerier) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return s.q.QueryRowContext(ctx, rebind(query), args...)
}

func (s sqlQuerier) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := s.q.QueryContext(ctx, rebind(query), args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

// sqlRows is a sqlstore.Rows: Close drops the error, which Err reports.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// sqlWriter runs transactions with Store.inTx on the write connection.
type sqlWriter struct {
	sqlQuerier
	s *Store
}

func (w sqlWriter) InTx(ctx context.Context, fn func(sqlstore.Tx) error) error {
	return w.s.inTx(ctx, func(tx *sql.Tx) error { return fn(sqlTx{sqlQuerier{tx}, tx}) })
}

// ExecAll runs stmts as one write of the group commit (groupcommit.go): all
// or nothing, in its own savepoint, answered once the group's transaction
// committed. Its only caller is the OCSP pre-signer's batch (a response per
// certificate just issued); in a transaction of its own, each batch was one
// more commit and WAL sync, and it held the one write connection while the
// enrollments' group waited for it (issue 20). A run of statements with the
// same query is prepared once.
func (w sqlWriter) ExecAll(ctx context.Context, stmts []sqlstore.Stmt) ([]int64, error) {
	// The counts come back through a channel, not a shared variable: a
	// caller whose context ends stops waiting, and its write may still run.
	out := make(chan []int64, 1)
	err := w.s.grouped(ctx, "exec all", func(ctx context.Context, tx *sql.Tx) error {
		counts := make([]int64, 0, len(stmts))
		defer func() { out <- counts }()
		var st *sql.Stmt
		defer func() {
			if st != nil {
				_ = st.Close()
			}
		}()
		for i, s := range stmts {
			if i == 0 || s.Query != stmts[i-1].Query {
				if st != nil {
					_ = st.Close()
				}
				var err error
				if st, err = tx.PrepareContext(ctx, rebind(s.Query)); err != nil {
					return mapErr(err)
				}
			}
			res, err := st.ExecContext(ctx, s.Args...)
			if err != nil {
				return mapErr(err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return mapErr(err)
			}
			counts = append(counts, n)
		}
		return nil
	})
	select {
	case counts := <-out:
		return counts, err
	default:
		return nil, err
	}
}

// sqlTx is a sqlstore.Tx.
type sqlTx struct {
	sqlQuerier
	tx *sql.Tx
}

// Lock takes nothing: the transaction is BEGIN IMMEDIATE, which already
// serialises it with every other writer.
func (sqlTx) Lock(context.Context, sqlstore.Lock) error { return nil }

func (t sqlTx) Batch(ctx context.Context, stmts []sqlstore.Stmt) error {
	for _, st := range stmts {
		if _, err := t.Exec(ctx, st.Query, st.Args...); err != nil {
			return err
		}
	}
	return nil
}

func (t sqlTx) AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error) {
	return appendAudit(ctx, t.tx, e)
}

// jsonArray encodes v as a JSON array of strings for json_each; nil is [].
func jsonArray(v []string) any {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v) // a []string always encodes
	return string(b)
}
