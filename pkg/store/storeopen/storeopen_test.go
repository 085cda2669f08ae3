package storeopen_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

func TestKindOf(t *testing.T) {
	cases := []struct {
		name string
		url  string
		want storeopen.Kind
		err  error
	}{
		{"postgres scheme selects Postgres", "postgres://u@127.0.0.1/ca", storeopen.Postgres, nil},
		{"postgresql scheme selects Postgres", "postgresql://u@127.0.0.1/ca?sslmode=disable", storeopen.Postgres, nil},
		{"sqlite colon path selects SQLite", "sqlite:ca-data/ca.db", storeopen.SQLite, nil},
		{"sqlite double slash selects SQLite", "sqlite:///var/lib/ca/ca.db", storeopen.SQLite, nil},
		{"an unknown scheme is refused", "mysql://u@h/ca", "", storeopen.ErrBadURL},
		{"an empty URL is refused", "", "", storeopen.ErrBadURL},
		{"a sqlite URL without a path is refused", "sqlite:", "", storeopen.ErrBadURL},
		{"a sqlite path with a query is refused", "sqlite:ca.db?mode=memory", "", storeopen.ErrBadURL},
		{"a malformed postgres URL is refused", "postgres://u:s3cret@host:notaport/ca", "", storeopen.ErrBadURL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := storeopen.KindOf(tc.url)
			if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
				t.Fatalf("KindOf error = %v, want %v", err, tc.err)
			}
			if got != tc.want {
				t.Errorf("KindOf = %q, want %q", got, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error quotes the password: %v", err)
			}
		})
	}
}

func TestSQLitePath(t *testing.T) {
	for url, want := range map[string]string{"sqlite:ca-data/ca.db": "ca-data/ca.db", "sqlite:///var/lib/ca/ca.db": "/var/lib/ca/ca.db"} {
		if got, err := storeopen.SQLitePath(url); err != nil || got != want {
			t.Errorf("SQLitePath(%q) = %q, %v; want %q", url, got, err, want)
		}
	}
	for _, url := range []string{"postgres://u:s3cret@127.0.0.1/ca", "sqlite:", "mysql://h/ca"} {
		if got, err := storeopen.SQLitePath(url); !errors.Is(err, storeopen.ErrBadURL) || got != "" || strings.Contains(fmt.Sprint(err), "s3cret") {
			t.Errorf("SQLitePath(%q) = %q, %v; want ErrBadURL without the URL", url, got, err)
		}
	}
}

// backend is one database kind with a way to poke at its schema table.
type backend struct {
	name string
	url  func(t *testing.T) string // a migrated, empty database
	exec func(t *testing.T, url, query string)
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) string { return testkit.SQLiteURL(t) }, func(t *testing.T, url, q string) {
			t.Helper()
			db, err := sql.Open("sqlite", strings.TrimPrefix(url, "sqlite:"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}},
		{"postgres", func(t *testing.T) string { return testkit.PostgresURL(t) }, func(t *testing.T, url, q string) {
			t.Helper()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}},
	}
}

func TestSchemaLifecycle(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			url := b.url(t)

			version := func(wantV uint, wantDirty bool) {
				t.Helper()
				v, dirty, err := storeopen.Version(ctx, url)
				if err != nil || v != wantV || dirty != wantDirty {
					t.Fatalf("Version = %d, dirty %v, %v; want %d, dirty %v", v, dirty, err, wantV, wantDirty)
				}
			}
			openRefused := func(wantMsg string) {
				t.Helper()
				s, err := storeopen.Open(ctx, url)
				if err == nil {
					s.Close()
					t.Fatalf("Open succeeded; want a schema mismatch")
				}
				if !errors.Is(err, store.ErrSchemaMismatch) {
					t.Fatalf("Open: %v; want ErrSchemaMismatch", err)
				}
				if !strings.Contains(err.Error(), wantMsg) {
					t.Errorf("Open error %q does not say %q", err, wantMsg)
				}
			}
			openOK := func() {
				t.Helper()
				s, err := storeopen.Open(ctx, url)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if err := s.Ping(ctx); err != nil {
					t.Errorf("Ping: %v", err)
				}
				s.Close()
			}

			version(storeopen.ExpectedVersion, false)
			openOK()
			if err := storeopen.Migrate(ctx, url, "up"); err != nil {
				t.Errorf("up with nothing to do: %v", err)
			}
			if err := storeopen.Migrate(ctx, url, "version"); err != nil {
				t.Errorf("version: %v", err)
			}

			if err := storeopen.Migrate(ctx, url, "down"); err != nil {
				t.Fatalf("down: %v", err)
			}
			version(storeopen.ExpectedVersion-1, false)
			openRefused("run `ca migrate up`")
			if err := storeopen.Migrate(ctx, url, "down"); err != nil {
				t.Errorf("down with nothing left: %v", err)
			}

			if err := storeopen.Migrate(ctx, url, "up"); err != nil {
				t.Fatalf("up: %v", err)
			}
			openOK()

			newer := storeopen.ExpectedVersion + 1
			if err := storeopen.Migrate(ctx, url, fmt.Sprintf("force %d", newer)); err != nil {
				t.Fatalf("force: %v", err)
			}
			openRefused(fmt.Sprintf("unknown schema version %d, this binary knows up to %d", newer, storeopen.ExpectedVersion))

			if err := storeopen.Migrate(ctx, url, fmt.Sprintf("force %d", storeopen.ExpectedVersion)); err != nil {
				t.Fatalf("force back: %v", err)
			}
			b.exec(t, url, "UPDATE schema_migrations SET dirty = true")
			version(storeopen.ExpectedVersion, true)
			openRefused("dirty")

			if err := storeopen.Migrate(ctx, url, "sideways"); !errors.Is(err, storeopen.ErrUnknownCommand) {
				t.Errorf("unknown command: %v", err)
			}
		})
	}
}

func TestOpenRefusesAnEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "empty.db")
	_, err := storeopen.Open(ctx, "sqlite:"+path)
	if !errors.Is(err, store.ErrSchemaMismatch) || !strings.Contains(err.Error(), "ca migrate up") {
		t.Fatalf("Open of a database never migrated: %v; want ErrSchemaMismatch telling to run `ca migrate up`", err)
	}
}
