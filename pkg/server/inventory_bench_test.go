package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// BenchmarkInventoryPage measures one page (100 rows) of GET
// /v1/certificates, query and JSON answer, on a big prepared Postgres
// database: CA_BENCH_INVENTORY_URL=postgres://... after `ca gendata --count
// 1000000` on it. Each iteration is one request with one of the filter sets
// below, from the first page or from a random depth (a cursor at a random
// time in the last 30 days); it reports p50 and p99 in milliseconds.
// Not part of `make test`: without the variable it skips.
func BenchmarkInventoryPage(b *testing.B) {
	dbURL := os.Getenv("CA_BENCH_INVENTORY_URL")
	if dbURL == "" {
		b.Skip("set CA_BENCH_INVENTORY_URL to a Postgres database filled by `ca gendata`")
	}
	ctx := context.Background()
	st, err := storeopen.Open(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rt := &Routes{d: Deps{Clock: clock.Real{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Operators: OperatorDeps{Store: st}}}
	now := time.Now().UTC()
	filters := []string{
		"",
		"status=active",
		"status=revoked",
		"status=expired",
		"expiring_within=24h",
		"identity=spiffe://example.org/ci/acme/svc-%04d",
		"identity_prefix=spiffe://example.org/ci/acme/svc-00",
		"repository=acme/svc-%04d",
		"issuer=int-1&status=active",
		"issued_since=" + now.Add(-6*time.Hour).Format(time.RFC3339),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	query := func() (string, int) {
		i := rng.IntN(len(filters))
		f := filters[i]
		if slices.Contains([]byte(f), '%') {
			f = fmt.Sprintf(f, rng.IntN(5000))
		}
		v, _ := url.ParseQuery(f)
		v.Set("limit", "100")
		if rng.IntN(2) == 0 { // a random depth, in the filter's order
			fq, err := ParseCertificateQuery(v, now)
			if err != nil {
				b.Fatal(err)
			}
			q, err := fq.Query()
			if err != nil {
				b.Fatal(err)
			}
			at := now.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
			last := store.Certificate{CreatedAt: at, Serial: "ffffffffffffffffffffffffffffffff",
				SPIFFEID: fmt.Sprintf("%s%02d", v.Get("identity_prefix"), rng.IntN(100)),
				NotAfter: now.Add(time.Duration(rng.Int64N(int64(fq.ExpiringWithin) + 1)))}
			v.Set("cursor", q.NextCursor(last))
		}
		return v.Encode(), i
	}
	durations := make([]time.Duration, 0, b.N)
	byFilter := make([][]time.Duration, len(filters))
	b.ResetTimer()
	for range b.N {
		raw, i := query()
		req := httptest.NewRequest(http.MethodGet, "/v1/certificates?"+raw, nil)
		w := httptest.NewRecorder()
		start := time.Now()
		if err := rt.listCertificates(w, req); err != nil {
			b.Fatalf("%s: %v", req.URL.RawQuery, err)
		}
		d := time.Since(start)
		durations = append(durations, d)
		byFilter[i] = append(byFilter[i], d)
	}
	b.StopTimer()
	pct := func(ds []time.Duration, p float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(float64(len(ds)-1)*p)].Microseconds()) / 1000
	}
	for i, ds := range byFilter {
		if len(ds) > 0 {
			b.Logf("%-60q n=%4d p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms", filters[i], len(ds), pct(ds, 0.5), pct(ds, 0.99), pct(ds, 1))
		}
	}
	b.ReportMetric(pct(durations, 0.5), "p50-ms")
	b.ReportMetric(pct(durations, 0.99), "p99-ms")
	b.ReportMetric(pct(durations, 1), "max-ms")
}
