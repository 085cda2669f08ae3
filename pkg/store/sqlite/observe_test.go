package sqlite_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
)

// summaries is a store.Observer that keeps the summaries it is told of.
type summaries struct {
	mu  sync.Mutex
	ops map[string]int
}

func (s *summaries) ObserveStatement(op string, _ time.Duration, _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops[op]++
}

// The driver wrapper that times the statements changes nothing the store
// does: the whole conformance suite passes through it, and every statement
// it ran was told to the observer by a summary, never by its text.
func TestConformanceObserved(t *testing.T) {
	obs := &summaries{ops: map[string]int{}}
	t.Run("suite", func(t *testing.T) { // returns once its parallel tests are done
		storetest.Run(t, func(t *testing.T) store.Store {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := sqlite.OpenObserved(ctx, strings.TrimPrefix(testkit.SQLiteURL(t), "sqlite:"), obs)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		})
	})
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for op := range obs.ops {
		if op == "" || op == "OTHER" || strings.ContainsAny(op, "$?'(,=") {
			t.Errorf("statement observed as %q: not a summary", op)
		}
	}
	for _, want := range []string{"CONNECT", "BEGIN", "COMMIT", "SELECT certificates", "INSERT certificates", "UPDATE certificates", "INSERT audit_log"} {
		if obs.ops[want] == 0 {
			t.Errorf("no %q statement observed; observed %v", want, obs.ops)
		}
	}
}

// The OCSP pre-signer's batches (ExecAll) are writes of the group commit,
// not transactions of their own: each runs in a group's savepoint, and a
// batch whose statement fails undoes only its own statements (issue 20:
// each batch was one more commit and WAL sync, and held the one write
// connection while the enrollments' group waited).
func TestExecAllIsAWriteOfTheGroupCommit(t *testing.T) {
	ctx := context.Background()
	obs := &summaries{ops: map[string]int{}}
	s, err := sqlite.OpenObserved(ctx, strings.TrimPrefix(testkit.SQLiteURL(t), "sqlite:"), obs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	root := store.Issuer{ID: "root", Kind: store.KindRoot, KeyURI: "software:root", CertDER: []byte("root"),
		SubjectKeyID: []byte{1}, NotBefore: now, NotAfter: now.Add(time.Hour), State: store.IssuerActive,
		CreatedAt: now, UpdatedAt: now}
	if err := s.InsertIssuer(ctx, root); err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	clear(obs.ops)
	obs.mu.Unlock()

	touch := sqlstore.Stmt{Query: `UPDATE issuers SET updated_at = $1 WHERE id = 'root'`, Args: []any{now.Add(time.Minute).UnixMicro()}}
	counts, err := s.ExecAllForTest(ctx, []sqlstore.Stmt{touch, touch})
	if err != nil || len(counts) != 2 || counts[0] != 1 || counts[1] != 1 {
		t.Fatalf("ExecAll = %v, %v", counts, err)
	}
	obs.mu.Lock()
	savepoints, commits := obs.ops["SAVEPOINT"], obs.ops["COMMIT"]
	obs.mu.Unlock()
	if savepoints != 1 || commits != 1 {
		t.Errorf("%d savepoints and %d commits for one batch; want the group's 1 and 1 (observed %v)", savepoints, commits, obs.ops)
	}

	// A failing statement undoes the batch's earlier ones, and only them.
	later := sqlstore.Stmt{Query: touch.Query, Args: []any{now.Add(time.Hour).UnixMicro()}}
	bad := sqlstore.Stmt{Query: `INSERT INTO issuers (id) VALUES ('root')`}
	if _, err := s.ExecAllForTest(ctx, []sqlstore.Stmt{later, bad}); err == nil {
		t.Fatal("a batch with a failing statement succeeded")
	}
	got, err := s.GetIssuer(ctx, "root")
	if err != nil {
		t.Fatal(err)
	}
	if !got.UpdatedAt.Equal(now.Add(time.Minute)) {
		t.Errorf("updated_at = %v; the failed batch's first statement was kept", got.UpdatedAt)
	}
}
