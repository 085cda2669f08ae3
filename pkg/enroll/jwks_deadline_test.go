package enroll

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/policy"
)

// A key fetch that a partition swallows must not hold the request that
// triggered it past the request's deadline (issue 18): the fetch goes on,
// bounded by FetchTimeout, for the cache; the caller gets
// token_issuer_unavailable at its deadline.
func TestAKeyFetchIntoAPartitionEndsAtTheCallersDeadline(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })

	clk := clock.NewFake(t0)
	iss := testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(clk))
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	doc := fmt.Sprintf("trust_domain: example.org\ntoken_issuers:\n  - name: cut\n    issuer: %s\n    audience: %s\n    jwks_url: %s/keys\n",
		iss.URL, testkit.DefaultOIDCAudience, hang.URL)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(clk, WithHTTPClient(hang.Client()), WithLimits(Limits{FetchTimeout: 20 * time.Second}))
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err = v.Verify(ctx, pol, iss.GitHubToken(t, nil))
	took := time.Since(start)
	if r := reasonOf(t, err); r != ReasonTokenIssuerUnavailable {
		t.Errorf("reason %q (%v), want token_issuer_unavailable", r, err)
	}
	if took > deadline+time.Second {
		t.Errorf("Verify returned after %v with a %v deadline", took, deadline)
	}
}
