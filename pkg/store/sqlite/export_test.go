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
// mark's answer as given when its statement ran, the others' the group's own
// error for all when the transaction failed.
func (s *Store) CommitGroupForTest(ctx context.Context, writes []GroupWrite) ([]store.AuditEntry, []error) {
	entries := make([]store.AuditEntry, len(writes))
	group := make([]*write, len(writes))
	errs := make([]error, len(writes))
	for i, w := range writes {
		var fn func(context.Context, *sql.Tx) error
		var mark *tokenMark
		switch {
		case w.Poison:
			fn = func(ctx context.Context, tx *sql.Tx) error {
				_, _ = tx.ExecContext(ctx, "ROLLBACK")
				return errors.New("poisoned write")
			}
		case w.Token != "":
			fn = s.markWrite(w.Token, w.Exp, w.Now)
			mark = &tokenMark{key: w.Token, expiresAt: w.Exp, now: w.Now}
		default:
			var err error
			if fn, err = s.recordWrite(w.Cert, w.Entry, &entries[i]); err != nil {
				errs[i] = err
				fn = func(context.Context, *sql.Tx) error { return err }
			}
		}
		group[i] = &write{ctx: ctx, fn: fn, done: make(chan error, 1), mark: mark}
	}
	res, err := s.runGroup(ctx, group)
	for i := range writes {
		if group[i].answered {
			errs[i] = <-group[i].done
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

// OpenCheckpointTest is Open with the checkpointer's tick interval and WAL
// limit (frames) given.
func OpenCheckpointTest(ctx context.Context, path string, interval time.Duration, limit int) (*Store, error) {
	return openWith(ctx, path, nil, interval, limit)
}

// CheckpointForTest runs one pass of the checkpointer now, as a tick does
// (force: even if nothing was committed since the last one), and returns the
// WAL's frames after its PASSIVE checkpoint, -1 if it did not run.
func (s *Store) CheckpointForTest(ctx context.Context, force bool) (int, error) {
	return s.ckpt.checkpoint(ctx, force)
}

// CheckpointErr is the error of the checkpointer's last pass, nil if it
// succeeded.
func (s *Store) CheckpointErr() error {
	s.ckpt.mu.Lock()
	defer s.ckpt.mu.Unlock()
	return s.ckpt.lastErr
}

// BreakCheckpointerForTest closes the checkpointer's connection, so that
// every checkpoint after it fails.
func (s *Store) BreakCheckpointerForTest() { _ = s.ckpt.db.Close() }

// ConnectionSettingsForTest reads the settings of the write connection
// ("w.") and of the checkpointer's ("ckpt.") that durability and the
// checkpointing rely on.
func (s *Store) ConnectionSettingsForTest(ctx context.Context) (map[string]int64, error) {
	got := map[string]int64{}
	for _, c := range []struct {
		prefix string
		db     *sql.DB
	}{{"w.", s.w}, {"ckpt.", s.ckpt.db}} {
		for _, p := range []string{"synchronous", "wal_autocheckpoint", "temp_store", "busy_timeout"} {
			var v int64
			if err := c.db.QueryRowContext(ctx, `PRAGMA `+p).Scan(&v); err != nil {
				return nil, err
			}
			got[c.prefix+p] = v
		}
		var mode string
		if err := c.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			return nil, err
		}
		if mode == "wal" {
			got[c.prefix+"wal"] = 1
		}
	}
	return got, nil
}
