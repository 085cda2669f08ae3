package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
)

// TestMarkTokenUsedIsFlushedBeforeItReturns: a replay mark must be on disk
// before anything is signed for its token, not merely committed: a mark
// committed asynchronously is lost by a crash or a failover before the WAL
// writer flushes it, while the enrollment goes on and records its
// certificate on the recovered or promoted server (issue 20 tried it). So
// after each MarkTokenUsed the WAL must be flushed past where it stood
// before the mark. (Other sessions' commits can flush an asynchronous mark
// by chance, so on a busy server this can miss the regression; 20 rounds
// on a quiet one do not.)
func TestMarkTokenUsedIsFlushedBeforeItReturns(t *testing.T) {
	ctx := context.Background()
	s, dbURL := openStore(t)
	probe := connect(t, dbURL)
	now := time.Now()
	for i := range 20 {
		var before string
		if err := probe.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&before); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkTokenUsed(ctx, fmt.Sprintf("iss|jti-flushed-%d", i), now.Add(time.Hour), now); err != nil {
			t.Fatal(err)
		}
		var flushed bool
		if err := probe.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn() > $1::pg_lsn`, before).Scan(&flushed); err != nil {
			t.Fatal(err)
		}
		if !flushed {
			t.Fatalf("round %d: MarkTokenUsed returned before the WAL was flushed past %s (an asynchronous commit)", i, before)
		}
	}
}

// TestMarksOfTwoReplicasRacingOnSharedTokens: two replicas' mark groups that
// share tokens (one token presented to both at once) must let exactly one
// use of each through, with no other error: the groups write their keys in
// one order, so they wait on each other instead of deadlocking.
func TestMarksOfTwoReplicasRacingOnSharedTokens(t *testing.T) {
	ctx := context.Background()
	dbURL := testkit.PostgresURL(t)
	var replicas []store.Store
	for range 2 {
		s, err := postgres.Open(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		replicas = append(replicas, s)
	}
	for round := range 40 {
		wins := storetest.MarkRace(t, replicas, fmt.Sprintf("iss|shared-%d-", round), 64, 6)
		for k, n := range wins {
			if n != 1 {
				t.Errorf("token %s: %d uses succeeded across two replicas, want exactly 1", k, n)
			}
		}
	}
}

// TestAMarkGroupThatDeadlocksWithAPruneIsWrittenAgain: a group replacing two
// expired marks takes their row locks in key order; a prune deleting
// expired marks takes them in its own order, so the two can wait on each
// other. The database then cancels one side; when it is the group, the
// group is written once more instead of failing its callers.
func TestAMarkGroupThatDeadlocksWithAPruneIsWrittenAgain(t *testing.T) {
	ctx := context.Background()
	s, dbURL := openStore(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	keys := []string{"iss|dl-a", "iss|dl-b"}
	for _, k := range keys {
		if err := s.MarkTokenUsed(ctx, k, t0.Add(time.Minute), t0); err != nil {
			t.Fatal(err)
		}
	}
	prune := connect(t, dbURL)
	// The prune's side: holds dl-b, and waits long before checking for a
	// deadlock itself, so that the group's backend is the one that finds it.
	tx, err := prune.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SET LOCAL deadlock_timeout = '20s'`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM used_tokens WHERE key = $1`, keys[1]); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	results := make(chan []error, 1)
	go func() { results <- s.MarkGroupForTest(ctx, keys, t0.Add(time.Hour), t0.Add(2*time.Minute)) }()
	// Wait until the group holds dl-a and waits for dl-b (for the prune).
	probe := connect(t, dbURL)
	for waiting := false; !waiting; {
		if err := probe.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_stat_activity
			WHERE $1 = ANY(pg_blocking_pids(pid))`, pid).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The prune now reaches dl-a: a cycle, found by the group's backend
	// after its deadlock_timeout (1 s by default).
	if _, err := tx.Exec(ctx, `DELETE FROM used_tokens WHERE key = $1`, keys[0]); err != nil {
		t.Fatalf("the prune's side was cancelled instead of the group: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for i, err := range <-results {
		if err != nil {
			t.Errorf("%s: %v; want nil (the group written again after the deadlock)", keys[i], err)
		}
	}
	for _, k := range keys {
		if err := s.MarkTokenUsed(ctx, k, t0.Add(time.Hour), t0.Add(3*time.Minute)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s after the group: %v; want ErrConflict (marked)", k, err)
		}
	}
}

// openStore opens a store on a fresh test database, closed with the test.
func openStore(t *testing.T) (*postgres.Store, string) {
	t.Helper()
	dbURL := testkit.PostgresURL(t)
	s, err := postgres.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dbURL
}

// connect opens a plain connection to dbURL, closed with the test.
func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
