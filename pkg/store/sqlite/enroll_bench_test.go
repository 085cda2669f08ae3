package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
)

// BenchmarkEnrollmentWrites measures the store's work per enrollment
// (storetest.BenchEnrollmentWrites) against a file database, as CPU per
// enrollment.
func BenchmarkEnrollmentWrites(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "ca.db")
	if err := storeopen.Migrate(ctx, "sqlite:"+path, "up"); err != nil {
		b.Fatal(err)
	}
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchEnrollmentWrites(b, s, false)
}
