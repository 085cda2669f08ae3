package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// DefaultPostgresAdminURL is the server tests use unless CA_TEST_POSTGRES_URL
// names another; the user must be allowed to create and drop databases.
const DefaultPostgresAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PostgresAdminURL is the URL of the test server's admin database
// (CA_TEST_POSTGRES_URL, else DefaultPostgresAdminURL).
func PostgresAdminURL() string {
	if u := os.Getenv("CA_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultPostgresAdminURL
}

// PostgresURL creates a fresh database with a unique name on the test server,
// migrates it to the current schema, and returns its URL (as the admin user,
// a superuser on the default server, so tamper tests can disable triggers).
// The database is dropped at cleanup, its connections terminated first. Safe
// for parallel tests. Without a reachable server the test is skipped loudly,
// or fails when CI=true.
func PostgresURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := PostgresAdminURL()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		needPostgres(t, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "wca_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testkit: create database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(t, admin, name) })

	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("testkit: CA_TEST_POSTGRES_URL is not a URL")
	}
	u.Path = "/" + name
	dbURL := u.String()
	if err := storeopen.Migrate(ctx, dbURL, "up"); err != nil {
		t.Fatalf("testkit: migrate %s up: %v", name, err)
	}
	return dbURL
}

// Postgres opens a store on a fresh, migrated database (see PostgresURL),
// closed at cleanup.
func Postgres(t testing.TB) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := storeopen.Open(ctx, PostgresURL(t))
	if err != nil {
		t.Fatalf("testkit: open postgres store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() }) // registered after the drop, so it runs first
	return s
}

func dropDatabase(t testing.TB, admin, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Errorf("testkit: drop database %s: %v", name, err)
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, _ = conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		t.Errorf("testkit: drop database %s: %v", name, err)
	}
}

// needPostgres stops a test that cannot reach the Postgres test server:
// fatal under CI=true, a loud skip elsewhere.
func needPostgres(t testing.TB, err error) {
	t.Helper()
	msg := "testkit: NO POSTGRES at " + redactedAdmin() + " (set CA_TEST_POSTGRES_URL, or start Postgres 15 on 127.0.0.1:5432 with trust auth): " + err.Error()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING: " + msg)
}

func redactedAdmin() string {
	u, err := url.Parse(PostgresAdminURL())
	if err != nil {
		return "CA_TEST_POSTGRES_URL"
	}
	return u.Redacted()
}
