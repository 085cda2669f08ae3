package storeopen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers "pgx5"
	migratesqlite "github.com/golang-migrate/migrate/v4/database/sqlite"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/workload-ca/workload-ca/migrations"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
)

// ExpectedVersion is the schema version this binary serves.
var ExpectedVersion = migrations.Version

// ErrUnknownCommand means Migrate was given a command it does not know.
var ErrUnknownCommand = errors.New("storeopen: unknown migrate command (want up, down, version or force N)")

// Migrate changes the schema of the database the URL names:
//
//   - "up" applies every pending migration (nothing to do is not an error);
//   - "down" rolls back exactly one migration, never more, so that a slip of
//     the keyboard cannot drop the whole schema (run it again to go further;
//     nothing to roll back is not an error);
//   - "version" changes nothing and only checks that the schema can be read;
//   - "force N" marks the schema as version N and clean, after an operator
//     has repaired a migration that failed half-way (dirty).
//
// Each migration runs in a transaction where the dialect allows. When ctx is
// done, Migrate stops after the migration in progress and returns ctx's error.
func Migrate(ctx context.Context, rawURL, cmd string) error {
	if cmd == "version" {
		_, _, err := Version(ctx, rawURL)
		return err
	}
	var run func(m *migrate.Migrate) error
	switch {
	case cmd == "up":
		run = func(m *migrate.Migrate) error { return m.Up() }
	case cmd == "down":
		run = func(m *migrate.Migrate) error {
			if _, _, err := m.Version(); errors.Is(err, migrate.ErrNilVersion) {
				return nil
			}
			return m.Steps(-1)
		}
	case strings.HasPrefix(cmd, "force "):
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(cmd, "force ")))
		if err != nil || n < -1 {
			return fmt.Errorf("%w: %q", ErrUnknownCommand, cmd)
		}
		run = func(m *migrate.Migrate) error { return m.Force(n) }
	default:
		return fmt.Errorf("%w: %q", ErrUnknownCommand, cmd)
	}
	err := withMigrate(ctx, rawURL, run)
	if errors.Is(err, migrate.ErrNoChange) {
		return nil
	}
	return err
}

// Version reports the schema version recorded in the database the URL
// names, 0 if no migration was ever applied (or all were rolled back), and
// whether the last migration failed half-way (dirty).
func Version(ctx context.Context, rawURL string) (version uint, dirty bool, err error) {
	err = withMigrate(ctx, rawURL, func(m *migrate.Migrate) error {
		var err error
		version, dirty, err = m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			version, dirty, err = 0, false, nil
		}
		return err
	})
	return version, dirty, err
}

// withMigrate builds a golang-migrate instance for the URL over the embedded
// migrations of its dialect, runs fn in a goroutine and closes it. On ctx
// done it asks the run to stop after the current migration and waits.
func withMigrate(ctx context.Context, rawURL string, fn func(m *migrate.Migrate) error) error {
	t, err := parse(rawURL)
	if err != nil {
		return err
	}
	m, err := newMigrate(t)
	if err != nil {
		return err
	}
	defer m.Close()
	done := make(chan error, 1)
	go func() { done <- fn(m) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("storeopen: migrate %s: %w", t.kind, err)
		}
		return nil
	case <-ctx.Done():
		m.GracefulStop <- true
		<-done
		return fmt.Errorf("storeopen: migrate %s: %w", t.kind, ctx.Err())
	}
}

func newMigrate(t target) (*migrate.Migrate, error) {
	switch t.kind {
	case Postgres:
		src, err := iofs.New(migrations.Files, migrations.PostgresDir)
		if err != nil {
			return nil, fmt.Errorf("storeopen: embedded migrations: %w", err)
		}
		u, err := url.Parse(t.dsn)
		if err != nil {
			return nil, fmt.Errorf("%w: malformed postgres URL", ErrBadURL)
		}
		u.Scheme = "pgx5"
		q := u.Query()
		if !q.Has("connect_timeout") {
			q.Set("connect_timeout", "10")
		}
		u.RawQuery = q.Encode()
		m, err := migrate.NewWithSourceInstance("iofs", src, u.String())
		if err != nil {
			return nil, fmt.Errorf("storeopen: connect to postgres for migrations: %w", err)
		}
		return m, nil
	default:
		src, err := iofs.New(migrations.Files, migrations.SQLiteDir)
		if err != nil {
			return nil, fmt.Errorf("storeopen: embedded migrations: %w", err)
		}
		if err := sqlite.CreateFile(t.dsn); err != nil {
			return nil, err
		}
		db, err := sql.Open("sqlite", sqlite.DSN(t.dsn))
		if err != nil {
			return nil, fmt.Errorf("storeopen: open sqlite for migrations: %w", err)
		}
		db.SetMaxOpenConns(1)
		drv, err := migratesqlite.WithInstance(db, &migratesqlite.Config{})
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("storeopen: open sqlite for migrations: %w", err)
		}
		m, err := migrate.NewWithInstance("iofs", src, "sqlite", drv)
		if err != nil {
			_ = drv.Close()
			return nil, fmt.Errorf("storeopen: open sqlite for migrations: %w", err)
		}
		return m, nil
	}
}
