package sqlite_test

import (
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
)

func TestAuthzConformance(t *testing.T) {
	storetest.RunAuthz(t, func(t *testing.T) store.Store { return testkit.SQLite(t) })
}
