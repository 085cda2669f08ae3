package telemetry_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
	"github.com/workload-ca/workload-ca/pkg/store/storetest"
	"github.com/workload-ca/workload-ca/pkg/telemetry"
)

// The cost of timing the store: the same store benchmarks on a store opened
// without and with a StoreTimer.

func BenchmarkTimedGetCertificate(b *testing.B) { benchTimed(b, storetest.BenchGetCertificate) }

func BenchmarkTimedRecordIssuance(b *testing.B) { benchTimed(b, storetest.BenchRecordIssuance) }

func benchTimed(b *testing.B, bench func(*testing.B, store.Store)) {
	engines := []struct {
		name string
		url  func(testing.TB) string
	}{{"sqlite", testkit.SQLiteURL}, {"postgres", testkit.PostgresURL}}
	for _, e := range engines {
		for _, timed := range []bool{false, true} {
			name := e.name + "/untimed"
			if timed {
				name = e.name + "/timed"
			}
			b.Run(name, func(b *testing.B) {
				var obs store.Observer
				if timed {
					t, err := telemetry.NewStoreTimer(prometheus.NewRegistry())
					if err != nil {
						b.Fatal(err)
					}
					obs = t
				}
				st, err := storeopen.OpenObserved(context.Background(), e.url(b), obs)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = st.Close() })
				b.ReportAllocs()
				bench(b, st)
			})
		}
	}
}
