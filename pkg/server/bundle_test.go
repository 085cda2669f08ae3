package server

import (
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestBundlePEMServesTheTrustAnchorsWithAStrongETag(t *testing.T) {
	f := newFixture(t)
	for _, router := range []http.Handler{f.routes.Public(), f.routes.API()} {
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/bundle.pem", nil))
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != PEMChainContentType {
			t.Fatalf("got %d %q", res.StatusCode, res.Header.Get("Content-Type"))
		}
		block, rest := pem.Decode(body)
		if block == nil || block.Type != "CERTIFICATE" || string(block.Bytes) != string(f.ca.root.Raw) || len(rest) != 0 {
			t.Fatalf("bundle is not exactly the root: %q", body)
		}
		etag := res.Header.Get("ETag")
		if len(etag) < 10 || etag[0] != '"' || res.Header.Get("Cache-Control") == "" {
			t.Fatalf("ETag %q Cache-Control %q", etag, res.Header.Get("Cache-Control"))
		}

		tests := []struct {
			name, ifNoneMatch string
			status            int
		}{
			{"the same ETag is answered 304", etag, 304},
			{"the same ETag in a list is answered 304", `"other", ` + etag, 304},
			{"a weak form of the ETag is answered 304", "W/" + etag, 304},
			{"a star is answered 304", "*", 304},
			{"another ETag gets the body", `"stale"`, 200},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req := httptest.NewRequest(http.MethodGet, "/bundle.pem", nil)
				req.Header.Set("If-None-Match", tt.ifNoneMatch)
				rec := httptest.NewRecorder()
				router.ServeHTTP(rec, req)
				if rec.Code != tt.status {
					t.Errorf("status = %d, want %d", rec.Code, tt.status)
				}
				if tt.status == 304 && rec.Body.Len() != 0 {
					t.Error("304 with a body")
				}
				if rec.Header().Get("ETag") != etag {
					t.Errorf("ETag changed: %q", rec.Header().Get("ETag"))
				}
			})
		}
	}
}

func TestBundlePEMIsStoreUnavailableWhenTheAnchorsCannotBeRead(t *testing.T) {
	f := newFixture(t)
	f.ca.failAnchors = fmt.Errorf("list issuers: %w", store.ErrUnavailable)
	rec := httptest.NewRecorder()
	f.routes.Public().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/bundle.pem", nil))
	if rec.Code != 503 || decodeProblem(t, rec.Result()).Reason != ReasonStoreUnavailable {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
}

func TestMetricsAreOnlyOnThePublicListener(t *testing.T) {
	f := newFixture(t)
	f.routes.Public().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	rec := httptest.NewRecorder()
	f.routes.Public().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `ca_http_requests_total{code="200",listener="public",method="GET",route="/healthz"} 1`) {
		t.Errorf("metrics: %d\n%s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	f.routes.API().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 404 {
		t.Errorf("API listener serves /metrics: %d", rec.Code)
	}
}
