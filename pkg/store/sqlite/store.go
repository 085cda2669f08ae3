package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/workload-ca/workload-ca/migrations"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// busyTimeout is how long a statement waits for another process's write lock
// (a `ca migrate` run, a backup) before failing with store.ErrUnavailable.
const busyTimeout = 10 * time.Second

// readConns is the size of the read-only connection pool.
const readConns = 4

// Store is a store.Store on one SQLite file. Build it with Open.
type Store struct {
	*ops // the operations shared with Postgres (dialect.go)

	w *sql.DB // the one write connection; its transactions are BEGIN IMMEDIATE
	r *sql.DB // read-only connections

	leaders sync.Map   // leadership name -> *sync.Mutex (TryLeadership)
	stmts   sync.Map   // stmtKey -> *sql.Stmt (prepared statements of the hot paths)
	gc      *committer // group commit of the enrollment path's writes; nil when read-only
	marks   *markSet   // token marks not yet committed (marks.go); nil when read-only
}

var _ store.Store = (*Store)(nil)

// DSN is the database/sql data source name for the file at path with the
// pragmas every connection needs: WAL, busy timeout, foreign keys, full sync.
// Migrations use it too, so that they run with the same settings.
func DSN(path string) string {
	return path + fmt.Sprintf("?_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()) +
		"&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
}

// CreateFile makes sure the database file exists, creating it (and its
// directory) readable by the owner only. An existing file is left alone.
func CreateFile(path string) error {
	if path == "" || strings.ContainsAny(path, "?#") || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return fmt.Errorf("sqlite: unusable database path %q (a file path without ? or #)", path)
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("sqlite: create database directory: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: create database file: %w", mapErr(err))
	}
	return f.Close()
}

// Open opens the database file at path (created with mode 0600 if missing)
// and checks that its schema is exactly migrations.Version; otherwise the
// error wraps store.ErrSchemaMismatch and says to run `ca migrate up`.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, nil)
}

// open is Open; obs, if not nil, is told of every statement (OpenObserved).
func open(ctx context.Context, path string, obs store.Observer) (*Store, error) {
	if err := CreateFile(path); err != nil {
		return nil, err
	}
	// temp_store=MEMORY keeps the statement journal in memory: the group
	// commit runs each write in a savepoint, and SQLite copies every page a
	// savepoint changes into that journal first (to roll the savepoint
	// back); past 64 KiB, a dozen index pages, it went to a temporary file,
	// a pwrite per page (issue 20: 15% of the CPU of the enrollment writes).
	// That journal only serves ROLLBACK TO inside a live transaction; crash
	// recovery uses the WAL, so durability does not depend on it.
	// Checkpoints stay SQLite's own, on the committing connection, every
	// 4,000 WAL pages (16 MiB) instead of the default 1,000: the hot index
	// pages are copied into the file once per checkpoint, and at 1,000 a
	// checkpoint ran every few group commits (alternated ca-load runs: 6%
	// more enrollments/s at 16 clients, 2% less CPU each, the same p99 at
	// 64). A checkpointer on a connection of its own, once a second, cost
	// the same CPU and made the tail at 64 clients worse (p99 95-115 ms
	// against 74-75 ms, docs/performance.md).
	w, err := openDB(DSN(path)+"&_txlock=immediate&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(4000)", obs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	r, err := openDB(DSN(path)+"&_pragma=query_only(1)", obs)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	s := &Store{w: w, r: r}
	s.ops = newOps(s)
	// The write connection first: it switches the file to WAL.
	if err := w.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("sqlite: open: %w", mapErr(err))
	}
	if err := s.checkSchema(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.prepareWrites(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	s.gc = newCommitter(s)
	return s, nil
}

// OpenReadOnly opens an existing database file for tools that only read
// (`ca audit verify`): it creates nothing (a missing file is an error
// wrapping os.ErrNotExist), changes no setting of the file, and every
// connection is query_only, so SQLite refuses any write. The schema must be
// exactly migrations.Version, as for Open.
func OpenReadOnly(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: unusable database path %q (a file path without ? or #)", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: no database file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sqlite: database %s is not a regular file", path)
	}
	dsn := path + fmt.Sprintf("?_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()) + "&_pragma=query_only(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	db.SetMaxOpenConns(readConns)
	db.SetMaxIdleConns(readConns)
	s := &Store{w: db, r: db}
	s.ops = newOps(s)
	if err := s.checkSchema(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// checkSchema reads golang-migrate's schema_migrations table.
func (s *Store) checkSchema(ctx context.Context) error {
	var tables int
	err := s.r.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&tables)
	if err != nil {
		return fmt.Errorf("sqlite: read schema version: %w", mapErr(err))
	}
	present := tables > 0
	var version int64
	var dirty bool
	if present {
		err := s.r.QueryRowContext(ctx, `SELECT version, dirty FROM schema_migrations LIMIT 1`).Scan(&version, &dirty)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			present = false
		case err != nil:
			return fmt.Errorf("sqlite: read schema version: %w", mapErr(err))
		case version < 0:
			present = false
		}
	}
	if err := store.CheckSchema(uint(version), dirty, present, migrations.Version); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// Ping checks that the database file answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", mapErr(err))
	}
	return nil
}

// Close stops the group committer (after its current group) and closes both
// connection pools.
func (s *Store) Close() error {
	if s.gc != nil {
		s.marks.close()
		s.gc.stop()
	}
	s.closeStatements()
	if s.r == s.w {
		return s.r.Close()
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE: the write lock is
// taken at once, so reads inside see the latest committed state) and commits
// it if fn returns nil. fn returns already-mapped errors.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", mapErr(err))
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", mapErr(err))
	}
	return nil
}

// us converts a time for storage: unix microseconds, NULL if zero.
func us(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// fromUS converts a scanned nullable column back: UTC, zero if NULL.
func fromUS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}
