package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/cafixture"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// The real components fit the operator endpoints' consumer-side interfaces.
var (
	_ OperatorStore      = store.Store(nil)
	_ CertificateRevoker = (*revoke.Revoker)(nil)
)

// operatorAudience is the audience of operator tokens in the test policy.
const operatorAudience = "workload-ca-operators"

// Operator SPIFFE IDs of the test policy.
const (
	breakGlassID = "spiffe://example.org/ops/break-glass"
	noRoleID     = "spiffe://example.org/ops/nobody"
)

// operatorServer is a real API listener (HTTPS with optional client
// certificates) over a real CA: an initialised issuer on the given key store
// and Postgres, pkg/revoke's Revoker, the bundle publisher and rotator, and a
// policy whose operator roles come from a test IdP (testkit.NewOIDCIssuer)
// and one client SPIFFE ID. A second test issuer is an enrollment-only token
// issuer of the same policy.
type operatorServer struct {
	t         testing.TB
	ctx       context.Context
	clk       *clock.Fake
	st        store.Store
	iss       *issuer.Issuer
	idp       *testkit.OIDCIssuer // the operator IdP (corp-idp)
	ci        *testkit.OIDCIssuer // an enrollment-only issuer (github)
	routes    *Routes
	apiURL    string
	roots     *x509.CertPool
	logs      *syncBuffer
	openapi   routers.Router
	policy    *policy.Holder // swap it to change the policy
	policySrc string         // the YAML it started with
	// extraHeader is added to every request while set.
	extraHeader map[string]string
}

func newOperatorServer(t testing.TB, keys hsm.KeyStore) *operatorServer {
	t.Helper()
	return newOperatorServerWith(t, keys, nil)
}

// newOperatorServerWith lets a test add dependencies (enrollment, JWT-SVIDs,
// identity holds) before the routes are built.
func newOperatorServerWith(t testing.TB, keys hsm.KeyStore, adjust func(o *operatorServer, d *Deps, rv *revoke.Revoker)) *operatorServer {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	o := &operatorServer{t: t, ctx: ctx, clk: clk, st: testkit.Postgres(t), logs: &syncBuffer{}}
	log := slog.New(slog.NewJSONHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	ca := cafixture.New(t, keys, o.st, clk, log)
	cfg := ca.Config
	o.iss = ca.Issuer
	rv, err := revoke.NewRevoker(revoke.Deps{Store: o.st, Keys: keys, Clock: clk, Log: log}, revoke.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bundle.NewPublisher(bundle.Deps{Store: o.st, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, bundle.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	rot, err := issuer.NewRotator(issuer.RotatorDeps{Keys: keys, Store: o.st, Bundles: pub, Clock: clk, Log: log}, cfg, issuer.RotationConfig{Overlap: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	o.idp = testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(clk), testkit.WithOIDCAudience(operatorAudience))
	o.ci = testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(clk))
	o.policySrc = fmt.Sprintf(`trust_domain: example.org
token_issuers:
  - name: corp-idp
    issuer: %s
    audience: %s
    jwks_url: %s
  - name: github
    issuer: %s
    audience: %s
rules:
  - name: ci
    issuer: github
    when: claims.repository_owner == "acme"
    spiffe_id: spiffe://example.org/ci/{{claims.repository|path}}
    max_ttl: 15m
roles:
  - role: auditor
    issuer: corp-idp
    when: '"pki-auditors" in claims.groups'
  - role: revoker
    issuer: corp-idp
    when: '"pki-revokers" in claims.groups'
  - role: admin
    issuer: corp-idp
    when: '"pki-admins" in claims.groups'
  - role: admin
    client_spiffe_id: %s
`, o.idp.URL, operatorAudience, o.idp.JWKSURL(), o.ci.URL, testkit.DefaultOIDCAudience, breakGlassID)
	pol, err := policy.Parse([]byte(o.policySrc))
	if err != nil {
		t.Fatal(err)
	}
	// httptest servers share one certificate, so the IdP's client trusts both.
	verifier := enroll.NewVerifier(clk, enroll.WithHTTPClient(o.idp.Client()), enroll.WithLogger(log))

	o.policy = policy.NewHolder(pol)
	deps := Deps{
		Log: log, Clock: clk, Store: o.st, Keys: keys, Anchors: o.iss,
		Metrics: prometheus.NewRegistry(), BodyLimit: 64 << 10, ReadyTimeout: time.Second,
		Policy: o.policy, Verifier: verifier,
		Operators: OperatorDeps{Store: o.st, Revoker: rv},
		Enroll:    EnrollDeps{Issuer: o.iss, Records: o.st}, // the real issuer and store (lineage_test.go)
		Trust: &TrustDeps{
			Bundles: bundle.NewCache(o.st, clk, nil, bundle.ServeConfig{RefreshHint: 5 * time.Minute, Recheck: time.Second}),
			Versions: struct {
				*bundle.Publisher
				bundleVersionLister
			}{pub, o.st},
			Rotation: rot,
			Issuers:  o.st,
		},
	}
	if adjust != nil {
		adjust(o, &deps, rv)
	}
	o.routes, err = NewRoutes(deps)
	if err != nil {
		t.Fatal(err)
	}
	// The matrix denies more than a burst; the limit has its own test.
	o.routes.ops.limiter = &denialLimiter{rate: 1e6, burst: 1e6}
	o.start(log)
	if tt, ok := t.(*testing.T); ok { // benchmarks skip the document checks
		doc := loadOpenAPI(tt, o.apiURL)
		if o.openapi, err = gorillamux.NewRouter(doc); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// start serves the API listener on loopback, with its certificate from the
// CA and client certificates verified against the CA's anchors.
func (o *operatorServer) start(log *slog.Logger) {
	t := o.t
	m, err := NewCertManager(CertManagerConfig{
		Issue: func(ctx context.Context, req ServerCertRequest) ([]byte, [][]byte, error) {
			got, err := o.iss.Issue(ctx, issuer.Request{PublicKey: req.PublicKey, SPIFFEID: req.SPIFFEID,
				DNSNames: req.DNSNames, IPAddresses: req.IPAddresses, TTL: req.TTL, Actor: req.SPIFFEID, CAServer: true})
			if err != nil {
				return nil, nil, err
			}
			return got.DER, got.Chain, nil
		},
		TrustDomain: "example.org", Host: "127.0.0.1", Lifetime: time.Hour, Clock: o.clk, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Renew(o.ctx); err != nil {
		t.Fatal(err)
	}
	srv := New(Config{APIHandler: o.routes.API(), PublicHandler: o.routes.Public(),
		TLS: APITLSConfig(m, o.iss, o.clk, time.Minute, log), ShutdownGrace: 5 * time.Second, Log: log})
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pubLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, apiLn, pubLn) }()
	t.Cleanup(func() { cancel(); <-done })
	o.apiURL = "https://" + apiLn.Addr().String()
	anchors, err := o.iss.TrustAnchors(o.ctx)
	if err != nil {
		t.Fatal(err)
	}
	o.roots = x509.NewCertPool()
	for _, a := range anchors {
		o.roots.AddCert(a)
	}
}

// token mints an operator token from the IdP with these groups.
func (o *operatorServer) token(sub string, groups ...string) string {
	g := make([]any, 0, len(groups))
	for _, x := range groups {
		g = append(g, x)
	}
	return o.idp.Mint(o.t, map[string]any{"sub": sub, "groups": g, "email": sub + "@example.org"})
}

// leaf issues a workload certificate for id and returns it with its key.
func (o *operatorServer) leaf(id string, ttl time.Duration) (*issuer.Issued, tls.Certificate) {
	o.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		o.t.Fatal(err)
	}
	got, err := o.iss.Issue(o.ctx, issuer.Request{
		PublicKey: key.Public(), SPIFFEID: id, TTL: ttl, Actor: "test",
		Provenance: []byte(`{"token_issuer":"github","sub":"repo:acme/payments:ref:refs/heads/main","policy_rule":"ci"}`),
		PolicyRule: "ci", PolicyVersion: "v-test",
	})
	if err != nil {
		o.t.Fatalf("issue %s: %v", id, err)
	}
	return got, tls.Certificate{Certificate: append([][]byte{got.DER}, got.Chain...), PrivateKey: key}
}

// creds is how a test request authenticates.
type creds struct {
	bearer string
	cert   *tls.Certificate
}

// call sends one request to the API listener, checks the exchange against
// api/openapi.yaml, and returns the response with its body read.
func (o *operatorServer) call(c creds, method, path, body, requestID string) (*http.Response, []byte) {
	o.t.Helper()
	tc := &tls.Config{RootCAs: o.roots, MinVersion: tls.VersionTLS12}
	if c.cert != nil {
		tc.Certificates = []tls.Certificate{*c.cert}
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer client.CloseIdleConnections()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, o.apiURL+path, rd)
	if err != nil {
		o.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if requestID != "" {
		req.Header.Set(RequestIDHeader, requestID)
	}
	for k, v := range o.extraHeader {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		o.t.Fatalf("%s %s: %v", method, path, err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(raw))
	if body != "" {
		req.Body = io.NopCloser(strings.NewReader(body))
	}
	if tt, ok := o.t.(*testing.T); ok {
		validateExchange(tt, o.openapi, req, res)
	}
	res.Body = io.NopCloser(bytes.NewReader(raw))
	return res, raw
}

// decode unmarshals a JSON answer or fails the test.
func decode[T any](t *testing.T, raw []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return v
}

// auditByRequestID returns every audit entry, indexed by request id.
func (o *operatorServer) auditByRequestID() map[string][]store.AuditEntry {
	o.t.Helper()
	out := map[string][]store.AuditEntry{}
	var after int64
	for {
		page, err := o.st.AuditEntries(o.ctx, after, 1000)
		if err != nil {
			o.t.Fatal(err)
		}
		for _, e := range page {
			out[e.RequestID] = append(out[e.RequestID], e)
			after = e.Seq
		}
		if len(page) < 1000 {
			return out
		}
	}
}

// softwareKeys is a software key store in a temp dir.
func softwareKeys(t testing.TB) hsm.KeyStore {
	ks, err := hsm.OpenSoftware(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	return ks
}

// auditEntryForTest is the audit entry of a revocation made directly in the
// store by a test.
func auditEntryForTest(serial string) store.AuditEntry {
	return store.AuditEntry{Time: time.Now().UTC(), Actor: "test", Action: "revoke", Target: serial, Decision: "allow"}
}
