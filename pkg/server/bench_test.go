package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// benchRoutes is a fixture whose access log is discarded, so the benchmark
// measures the edge and not the test's log buffer.
func benchRoutes(b *testing.B) *fixture {
	f := newFixture(b)
	f.routes.d.Log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	f.routes.edge.log = f.routes.d.Log
	return f
}

func benchmarkGet(b *testing.B, h http.Handler, path, ifNoneMatch string) {
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if ifNoneMatch != "" {
			req.Header.Set("If-None-Match", ifNoneMatch)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 400 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

func BenchmarkHealthz(b *testing.B) {
	benchmarkGet(b, benchRoutes(b).routes.Public(), "/healthz", "")
}

func BenchmarkBundlePEM(b *testing.B) {
	benchmarkGet(b, benchRoutes(b).routes.Public(), "/bundle.pem", "")
}

func BenchmarkBundlePEMNotModified(b *testing.B) {
	h := benchRoutes(b).routes.Public()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/bundle.pem", nil))
	benchmarkGet(b, h, "/bundle.pem", rec.Header().Get("ETag"))
}

func BenchmarkNotFoundProblem(b *testing.B) {
	h := benchRoutes(b).routes.Public()
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/nope", nil))
	}
}
