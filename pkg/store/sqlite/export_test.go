package sqlite

import (
	"context"
	"database/sql"
	"errors"
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
// entry, (Token != "") a token replay mark, or (Poison) a write that ends
// the transaction under the group, as SQLite does after an I/O error, so
// that the group fails.
type GroupWrite struct {
	Cert     store.Certificate
	Entry    store.AuditEntry
	Token    string
	Exp, Now time.Time
	Poison   bool
}

// CommitGroupForTest runs writes as one group transaction, as the committer
// does with what it finds queued, and returns each write's outcome: a token
// mark's answer as MarkTokenUsed gave it (before the group: the mark is
// queued, and the group writes it first), the others' the group's own error
// for all when the transaction failed.
func (s *Store) CommitGroupForTest(ctx context.Context, writes []GroupWrite) ([]store.AuditEntry, []error) {
	entries := make([]store.AuditEntry, len(writes))
	group := make([]*write, len(writes))
	errs := make([]error, len(writes))
	for i, w := range writes {
		var fn func(context.Context, *sql.Tx) error
		answered := false
		switch {
		case w.Poison:
			fn = func(ctx context.Context, tx *sql.Tx) error {
				_, _ = tx.ExecContext(ctx, "ROLLBACK")
				return errors.New("poisoned write")
			}
		case w.Token != "":
			errs[i], answered = s.MarkTokenUsed(ctx, w.Token, w.Exp, w.Now), true
			fn = func(context.Context, *sql.Tx) error { return nil }
		default:
			var err error
			if fn, err = s.recordWrite(w.Cert, w.Entry, &entries[i]); err != nil {
				errs[i] = err
				fn = func(context.Context, *sql.Tx) error { return err }
			}
		}
		group[i] = &write{ctx: ctx, fn: fn, done: make(chan error, 1)}
		if answered {
			group[i].done <- errs[i]
		}
	}
	res, err := s.runGroup(ctx, group)
	for i, w := range writes {
		if w.Token != "" {
			continue
		}
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

// WriteConnectionSettingsForTest reads the write connection's settings that
// durability and the write path's cost rely on.
func (s *Store) WriteConnectionSettingsForTest(ctx context.Context) (map[string]int64, error) {
	got := map[string]int64{}
	for _, p := range []string{"synchronous", "wal_autocheckpoint", "temp_store"} {
		var v int64
		if err := s.w.QueryRowContext(ctx, `PRAGMA `+p).Scan(&v); err != nil {
			return nil, err
		}
		got[p] = v
	}
	var mode string
	if err := s.w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return nil, err
	}
	if mode == "wal" {
		got["wal"] = 1
	}
	return got, nil
}

// HoldCommitterForTest makes the committer run a write that waits until
// release is called; it returns once the committer is inside it.
func (s *Store) HoldCommitterForTest(ctx context.Context) (release func() error) {
	inside, out := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.grouped(ctx, "held", func(context.Context, *sql.Tx) error {
			close(inside)
			<-out
			return nil
		})
	}()
	<-inside
	return func() error { close(out); return <-done }
}

// TokenRecordedForTest reads a token's row on a connection of its own, as
// another process would after a crash.
func TokenRecordedForTest(ctx context.Context, path, key string) (bool, error) {
	db, err := sql.Open("sqlite", DSN(path))
	if err != nil {
		return false, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(*) FROM used_tokens WHERE key = ?`, key).Scan(&n)
	return n == 1, err
}
