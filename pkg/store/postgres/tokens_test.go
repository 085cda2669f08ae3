package postgres_test

import (
	"context"
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
	dbURL := testkit.PostgresURL(t)
	s, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	probe, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close(ctx)
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
