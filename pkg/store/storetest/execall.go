package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlstore"
)

// ExecAller is a store's sqlstore.Writer ExecAll, exported to its tests.
type ExecAller interface {
	ExecRaw(ctx context.Context, query string) error
	ExecAllForTest(ctx context.Context, stmts []sqlstore.Stmt) ([]int64, error)
}

// RunExecAll checks the contract of a writer's ExecAll, on which
// PutOCSPResponses tells each response's outcome: one count per statement
// in order; a failing statement fails the whole unit, with the counts of
// those before it, so that stmts[len(counts)] names it, and leaves nothing
// of the unit behind.
func RunExecAll(t *testing.T, s ExecAller) {
	ctx := ctxT(t)
	if err := s.ExecRaw(ctx, `CREATE TABLE execall_test (k TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	ins := func(k string) sqlstore.Stmt {
		return sqlstore.Stmt{Query: `INSERT INTO execall_test (k) VALUES ($1)`, Args: []any{k}}
	}
	touch := func(k string) sqlstore.Stmt {
		return sqlstore.Stmt{Query: `UPDATE execall_test SET k = $1 WHERE k = $1`, Args: []any{k}}
	}
	counts, err := s.ExecAllForTest(ctx, []sqlstore.Stmt{ins("a"), ins("b"), touch("zz"), ins("c"), touch("a")})
	if want := []int64{1, 1, 0, 1, 1}; err != nil || !reflect.DeepEqual(counts, want) {
		t.Fatalf("ExecAll = %v, %v; want %v", counts, err, want)
	}
	counts, err = s.ExecAllForTest(ctx, []sqlstore.Stmt{ins("d"), touch("b"), ins("a"), ins("e")})
	if !errors.Is(err, store.ErrConflict) || len(counts) != 2 {
		t.Fatalf("ExecAll with a taken key third = %v, %v; want 2 counts and ErrConflict", counts, err)
	}
	counts, err = s.ExecAllForTest(ctx, []sqlstore.Stmt{touch("d"), touch("e"), touch("c")})
	if want := []int64{0, 0, 1}; err != nil || !reflect.DeepEqual(counts, want) {
		t.Errorf("after a failed unit: %v, %v; want %v (nothing of it stored)", counts, err, want)
	}
	if counts, err := s.ExecAllForTest(ctx, nil); err != nil || len(counts) != 0 {
		t.Errorf("ExecAll of nothing = %v, %v", counts, err)
	}
}
