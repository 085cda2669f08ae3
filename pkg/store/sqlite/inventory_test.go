package sqlite_test

import (
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
)

var _ store.InventoryReader = (*sqlite.Store)(nil)

func TestInventory(t *testing.T) {
	storetest.RunInventory(t, func(t *testing.T) store.Store { return testkit.SQLite(t) })
}
