package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/workload-ca/workload-ca/migrations"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// defaultConnectTimeout bounds each connection attempt when the URL sets no
// connect_timeout, so that an unreachable database fails fast with
// store.ErrUnavailable instead of hanging a request.
const defaultConnectTimeout = 5 * time.Second

// Store is a store.Store on Postgres. Build it with Open.
type Store struct {
	*ops  // the operations shared with SQLite (dialect.go)
	pool  *pgxpool.Pool
	held  sync.Map           // leadership release funcs still held (TryLeadership)
	gc    *groupCommitter    // batches RecordIssuance (groupcommit.go)
	marks *grouper[*markReq] // batches MarkTokenUsed (markgroup.go)
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// URL or key=value
// string) and checks that its schema is exactly migrations.Version; otherwise
// the error wraps store.ErrSchemaMismatch and says to run `ca migrate up`. An
// unreachable database gives store.ErrUnavailable. Errors never quote dsn,
// which may hold a password.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return open(ctx, dsn, false, nil)
}

// open opens the pool; obs, if not nil, is told of every statement
// (OpenObserved).
func open(ctx context.Context, dsn string, readOnly bool, obs store.Observer) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the connection string; don't pass it on.
		return nil, errors.New("postgres: cannot parse the database URL")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	boundSessions(cfg) // bounds.go
	if readOnly {
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	if obs != nil {
		cfg.ConnConfig.Tracer = tracer{obs: obs} // observe.go
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", mapErr(err))
	}
	s := &Store{pool: pool}
	s.ops = newOps(s)
	if err := s.checkSchema(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	s.gc = newGroupCommitter(s)
	s.marks = newGrouper(s.writeMarks)
	return s, nil
}

// checkSchema reads golang-migrate's schema_migrations table.
func (s *Store) checkSchema(ctx context.Context) error {
	var present bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&present); err != nil {
		return fmt.Errorf("postgres: read schema version: %w", mapErr(err))
	}
	var version int64
	var dirty bool
	if present {
		err := s.pool.QueryRow(ctx, `SELECT version, dirty FROM schema_migrations LIMIT 1`).Scan(&version, &dirty)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			present = false
		case err != nil:
			return fmt.Errorf("postgres: read schema version: %w", mapErr(err))
		case version < 0:
			present = false
		}
	}
	if err := store.CheckSchema(uint(version), dirty, present, migrations.Version); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", mapErr(err))
	}
	return nil
}

// Close releases any leadership still held and closes every connection;
// in-flight calls finish first.
func (s *Store) Close() error {
	s.gc.stop()
	s.marks.stop()
	s.releaseAll()
	s.pool.Close()
	return nil
}

// inTx runs fn in a transaction and commits it if fn returns nil. fn returns
// already-mapped errors; begin and commit errors are mapped here.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", mapErr(err))
	}
	defer func() {
		// Not the caller's context, which may have ended (the rollback
		// must still be sent), but bounded: in a partition it would
		// otherwise wait for ever. A connection whose rollback fails is
		// closed, which rolls back as well.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		_ = tx.Rollback(rctx)
		cancel()
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", mapErr(err))
	}
	return nil
}

// ts converts a time for storage: UTC, microsecond precision, NULL if zero.
func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Truncate(time.Microsecond)
}

// fromTS converts a scanned nullable timestamptz back: UTC, zero if NULL.
func fromTS(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
