package enroll

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// fixture is a Decider wired to three real loopback OIDC issuers (GitHub-,
// GitLab- and Kubernetes-shaped) through a real policy file, with an
// in-memory replay marker unless a test swaps in a real store.
type fixture struct {
	clk         *clock.Fake
	gh, gl, k8s *testkit.OIDCIssuer
	pol         *policy.Policy
	holder      *policy.Holder
	v           *Verifier
	replay      *memReplay
	d           *Decider
}

const fixturePolicy = `
trust_domain: example.org
permitted_dns_domains: ["*.prod.internal", "*.svc.internal"]
token_issuers:
  - name: github
    issuer: %s
    audience: https://ca.example.org
  - name: gitlab
    issuer: %s
    audience: https://ca.example.org
    require_jti: true
  - name: k8s
    issuer: %s
    audience: https://ca.example.org
    max_token_age: 2h
rules:
  - name: payments-main
    issuer: github
    when: claims.repository == "acme/payments" && claims.ref == "refs/heads/main"
    spiffe_id: spiffe://example.org/prod/payments
    dns_names: [payments.prod.internal, api.prod.internal]
    max_ttl: 1h
    ttl: 30m
  - name: any-repo-ci
    issuer: github
    when: claims.repository_owner == "acme"
    spiffe_id: spiffe://example.org/ci/{{claims.repository|path}}
    max_ttl: 15m
    key_types: [ecdsa-p256]
  - name: gitlab-deploy
    issuer: gitlab
    when: claims.project_path.startsWith("platform/") && claims.environment == "production"
    spiffe_id: spiffe://example.org/gitlab/{{claims.project_path|path}}
    max_ttl: 1h
  - name: k8s-workloads
    issuer: k8s
    when: claims["kubernetes.io"].namespace == "payments"
    spiffe_id: spiffe://example.org/ns/{{claims["kubernetes.io"].namespace}}/sa/{{claims["kubernetes.io"].serviceaccount.name}}
    dns_names: ['{{claims["kubernetes.io"].serviceaccount.name}}.svc.internal']
    max_ttl: 24h
    ttl: 1h
`

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{clk: clock.NewFake(t0), replay: newMemReplay()}
	f.gh = testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(f.clk))
	f.gl = testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(f.clk))
	f.k8s = testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(f.clk))
	p, err := policy.Parse(fmt.Appendf(nil, fixturePolicy, f.gh.URL, f.gl.URL, f.k8s.URL))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	f.pol = p
	f.holder = policy.NewHolder(p)
	f.v = NewVerifier(f.clk, WithHTTPClient(f.gh.Client()))
	f.d = NewDecider(f.holder, f.v, f.replay, f.clk)
	return f
}

// memReplay is the in-memory stand-in for the store's MarkTokenUsed.
type memReplay struct {
	mu   sync.Mutex
	used map[string]time.Time
	fail error
}

func newMemReplay() *memReplay { return &memReplay{used: map[string]time.Time{}} }

func (m *memReplay) MarkTokenUsed(_ context.Context, key string, expiresAt, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if exp, ok := m.used[key]; ok && exp.After(now) {
		return fmt.Errorf("mem: token %w", store.ErrConflict)
	}
	m.used[key] = expiresAt
	return nil
}

// csrOpts shapes a test CSR.
type csrOpts struct {
	key        crypto.Signer
	dns        []string
	uris       []string
	extra      []pkix.Extension
	sigAlg     x509.SignatureAlgorithm
	commonName string
}

func newCSR(t testing.TB, o csrOpts) []byte {
	t.Helper()
	if o.key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		o.key = k
	}
	tmpl := &x509.CertificateRequest{
		Subject:            pkix.Name{CommonName: o.commonName},
		DNSNames:           o.dns,
		ExtraExtensions:    o.extra,
		SignatureAlgorithm: o.sigAlg,
	}
	for _, u := range o.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, o.key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func reasonOf(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	if _, ok := err.(*Error); !ok {
		t.Errorf("error %v is %T, want *Error", err, err)
	}
	return Reason(err)
}
