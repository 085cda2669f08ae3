package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
)

// TestMarkTokenUsedCommitsAsyncWithoutLeaking: the mark's transaction turns
// synchronous_commit off for itself only (set_config's is_local), so the
// pooled connection it ran on commits everything after it (the group
// commit of the certificate included) synchronously again; and the mark is
// committed when MarkTokenUsed returns: another connection sees it.
func TestMarkTokenUsedCommitsAsyncWithoutLeaking(t *testing.T) {
	ctx := context.Background()
	dbURL := testkit.PostgresURL(t)
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	s, err := postgres.Open(ctx, dbURL+sep+"pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if err := s.MarkTokenUsed(ctx, "iss|jti-async", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if v, err := s.ShowSetting(ctx, "synchronous_commit"); err != nil || v != "on" {
		t.Fatalf("synchronous_commit on the pool's one connection after a mark: %q, %v (want on)", v, err)
	}
	other, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var n int
	if err := other.QueryRow(ctx, `SELECT count(*) FROM used_tokens WHERE key = 'iss|jti-async'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the mark seen from another connection: %d rows, %v", n, err)
	}
	if err := s.MarkTokenUsed(ctx, "iss|jti-async", now.Add(time.Hour), now); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second use: %v, want ErrConflict", err)
	}
	if v, err := s.ShowSetting(ctx, "synchronous_commit"); err != nil || v != "on" {
		t.Fatalf("synchronous_commit after a refused mark: %q, %v", v, err)
	}
}
