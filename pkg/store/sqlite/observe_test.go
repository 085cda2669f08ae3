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
