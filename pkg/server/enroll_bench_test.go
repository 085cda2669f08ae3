//go:build unix

package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/cafixture"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/hold"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
	"github.com/workload-ca/workload-ca/pkg/telemetry"
)

// BenchmarkEnroll is one whole enrollment through the API router as `ca
// serve` wires it, minus TLS: the edge middleware (access log, deadline,
// body limit, recoverer, admission), a real ES256 token of a test IdP
// verified against its cached JWKS, the CSR, the CEL policy, the replay
// mark, the hold checks, a real issuer on software keys recording into
// SQLite (statements timed by telemetry.StoreTimer, issuance counted by
// telemetry.Issuer), the JSON answer and the decision and access log lines
// (JSON, info level, discarded). Minting each token and building the
// request are outside the timer.
func BenchmarkEnroll(b *testing.B) {
	ctx := context.Background()
	clk := clock.Real{}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	timer, err := telemetry.NewStoreTimer(reg)
	if err != nil {
		b.Fatal(err)
	}
	st, err := storeopen.OpenObserved(ctx, testkit.SQLiteURL(b), timer)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	ca := cafixture.New(b, testkit.SoftwareKeys(b), st, clk, log)
	leaves, err := telemetry.InstrumentIssuer(ca.Issuer, reg)
	if err != nil {
		b.Fatal(err)
	}
	holds, err := hold.New(st, clk, log, reg)
	if err != nil {
		b.Fatal(err)
	}
	oidc := testkit.NewOIDCIssuer(b)
	pol := acmePolicy(b, oidc)
	rt, err := NewRoutes(Deps{
		Log: log, Clock: clk, Store: st, Keys: &fakePinger{}, Anchors: ca.Issuer, Metrics: reg,
		BodyLimit: 64 << 10, ReadyTimeout: 200e6,
		Policy: policy.NewHolder(pol), Verifier: enroll.NewVerifier(clk, enroll.WithHTTPClient(oidc.Client()), enroll.WithLogger(log)),
		Enroll:     EnrollDeps{Issuer: leaves, Records: st},
		Identities: IdentityDeps{Holds: holds},
	})
	if err != nil {
		b.Fatal(err)
	}
	api := rt.API()
	_, csr := csrPEM(b)
	body := `{"csr":` + jsonString(csr) + `,"ttl":"10m"}`
	request := func() *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/v1/enroll", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+oidc.GitHubToken(b, nil))
		return req
	}
	enrollOnce := func(req *http.Request) {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("enroll = %d %s", rec.Code, rec.Body)
		}
	}
	enrollOnce(request()) // fetches the JWKS
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		req := request()
		start := testkit.ProcessCPU()
		b.StartTimer()
		enrollOnce(req)
		cpu += testkit.ProcessCPU() - start
	}
	// The process's CPU time (every goroutine: the store's committer, the
	// garbage collector) while enrollments ran: wall time here is mostly
	// the WAL's fsync.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// jsonString quotes s as a JSON string (the PEM's newlines).
func jsonString(s string) string {
	return `"` + strings.ReplaceAll(s, "\n", `\n`) + `"`
}
