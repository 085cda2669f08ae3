package postgres_test

import (
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
)

var _ store.InventoryReader = (*postgres.Store)(nil)

func TestInventory(t *testing.T) {
	storetest.RunInventory(t, func(t *testing.T) store.Store { return testkit.Postgres(t) })
}
