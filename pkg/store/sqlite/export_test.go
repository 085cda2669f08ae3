package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
)

// ExecRaw runs a statement directly, bypassing the Store API, so that the
// conformance suite can check that the database itself refuses tampering.
// It exists only in test builds.
func (s *Store) ExecRaw(ctx context.Context, query string) error {
	_, err := s.w.ExecContext(ctx, query)
	return mapErr(err)
}

// GroupWrite is one write of a test group: a certificate with its audit
// entry, or (Token != "") a token replay mark.
type GroupWrite struct {
	Cert     store.Certificate
	Entry    store.AuditEntry
	Token    string
	Exp, Now time.Time
}

// CommitGroupForTest runs writes as one group transaction, as the committer
// does with what it finds queued, and returns each write's outcome (the
// group's own error for all when the transaction failed).
func (s *Store) CommitGroupForTest(ctx context.Context, writes []GroupWrite) ([]store.AuditEntry, []error) {
	entries := make([]store.AuditEntry, len(writes))
	group := make([]*write, len(writes))
	errs := make([]error, len(writes))
	for i, w := range writes {
		var fn func(context.Context, *sql.Tx) error
		if w.Token != "" {
			fn = s.markWrite(w.Token, w.Exp, w.Now)
		} else {
			var err error
			if fn, err = s.recordWrite(w.Cert, w.Entry, &entries[i]); err != nil {
				errs[i] = err
				fn = func(context.Context, *sql.Tx) error { return err }
			}
		}
		group[i] = &write{ctx: ctx, fn: fn, done: make(chan error, 1)}
	}
	res, err := s.runGroup(ctx, group)
	for i := range writes {
		if err != nil {
			errs[i] = err
		} else {
			errs[i] = res[i]
		}
	}
	return entries, errs
}

// ExecAllForTest runs the shared operations' ExecAll on the write
// connection. It exists only in test builds.
func (s *Store) ExecAllForTest(ctx context.Context, stmts []sqlstore.Stmt) ([]int64, error) {
	return sqlWriter{sqlQuerier{s.w}, s}.ExecAll(ctx, stmts)
}
