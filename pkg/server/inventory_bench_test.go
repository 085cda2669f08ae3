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
	query := func() string {
		f := filters[rng.IntN(len(filters))]
		if slices.Contains([]byte(f), '%') {
			f = fmt.Sprintf(f, rng.IntN(5000))
		}
		v, _ := url.ParseQuery(f)
		v.Set("limit", "100")
		if rng.IntN(2) == 0 { // a random depth
			at := now.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
			v.Set("cursor", store.NextCursor(store.Certificate{CreatedAt: at, Serial: "ffffffffffffffffffffffffffffffff"}))
		}
		return v.Encode()
	}
	durations := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest(http.MethodGet, "/v1/certificates?"+query(), nil)
		w := httptest.NewRecorder()
		start := time.Now()
		if err := rt.listCertificates(w, req); err != nil {
			b.Fatalf("%s: %v", req.URL.RawQuery, err)
		}
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durations)
	pct := func(p float64) float64 {
		return float64(durations[int(float64(len(durations)-1)*p)].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}
