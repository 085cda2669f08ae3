package testkit

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// SQLiteURL returns the sqlite: URL of a fresh, migrated database file in
// t.TempDir().
func SQLiteURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := "sqlite:" + filepath.Join(t.TempDir(), "ca.db")
	if err := storeopen.Migrate(ctx, u, "up"); err != nil {
		t.Fatalf("testkit: migrate sqlite up: %v", err)
	}
	return u
}

// SQLite opens a store on a fresh, migrated SQLite file in t.TempDir(),
// closed at cleanup.
func SQLite(t testing.TB) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := storeopen.Open(ctx, SQLiteURL(t))
	if err != nil {
		t.Fatalf("testkit: open sqlite store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// EachStore runs fn as a subtest ("sqlite", "postgres") on a fresh store of
// each kind, for tests that must hold on both real stores.
func EachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Helper()
	for _, s := range []struct {
		name string
		open func(testing.TB) store.Store
	}{{"sqlite", SQLite}, {"postgres", Postgres}} {
		t.Run(s.name, func(t *testing.T) { fn(t, s.open(t)) })
	}
}
