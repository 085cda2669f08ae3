package postgres_test

import (
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
)

func TestExecAll(t *testing.T) {
	storetest.RunExecAll(t, testkit.Postgres(t).(storetest.ExecAller))
}
