package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/policy"
)

// testCA is a small in-memory CA (root -> intermediate -> leaf) standing in
// for pkg/issuer in this package's unit tests; cmd/ca's end-to-end tests use
// the real issuer.
type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	clock             clock.Clock
	issued            atomic.Int64
	failAnchors       error
}

func newTestCA(t testing.TB, clk clock.Clock) *testCA {
	t.Helper()
	ca := &testCA{clock: clk}
	now := clk.Now()
	var err error
	ca.rootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca.interKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	ca.root = mustCert(t, rootTmpl, rootTmpl, ca.rootKey.Public(), ca.rootKey)
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	ca.inter = mustCert(t, interTmpl, ca.root, ca.interKey.Public(), ca.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (ca *testCA) TrustAnchors(context.Context) ([]*x509.Certificate, error) {
	if ca.failAnchors != nil {
		return nil, ca.failAnchors
	}
	return []*x509.Certificate{ca.root}, nil
}

// leaf signs a leaf for pub with both client and server EKUs.
func (ca *testCA) leaf(t *testing.T, req ServerCertRequest) []byte {
	t.Helper()
	now := ca.clock.Now()
	u, err := url.Parse(req.SPIFFEID)
	if err != nil {
		t.Fatal(err)
	}
	serial := big.NewInt(1000 + ca.issued.Add(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(req.TTL),
		URIs: []*url.URL{u}, DNSNames: req.DNSNames, IPAddresses: req.IPAddresses,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	return mustCert(t, tmpl, ca.inter, req.PublicKey, ca.interKey).Raw
}

func (ca *testCA) issueFunc(t *testing.T) IssueFunc {
	return func(_ context.Context, req ServerCertRequest) ([]byte, [][]byte, error) {
		return ca.leaf(t, req), [][]byte{ca.inter.Raw}, nil
	}
}

// clientCert is a workload certificate with the given SPIFFE ID.
func (ca *testCA) clientCert(t *testing.T, spiffeID string) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := ca.leaf(t, ServerCertRequest{PublicKey: key.Public(), SPIFFEID: spiffeID, TTL: time.Hour})
	return tls.Certificate{Certificate: [][]byte{der, ca.inter.Raw}, PrivateKey: key}
}

// fakePinger answers Ping with err, after delay (or ctx end).
type fakePinger struct {
	mu    sync.Mutex
	err   error
	delay time.Duration
}

func (p *fakePinger) set(err error, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err, p.delay = err, delay
}

func (p *fakePinger) Ping(ctx context.Context) error {
	p.mu.Lock()
	err, delay := p.err, p.delay
	p.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fixture is a Routes over fakes, with its log captured.
type fixture struct {
	routes     *Routes
	ca         *testCA
	store, hsm *fakePinger
	logs       *syncBuffer
	clock      *clock.Fake
	reg        *prometheus.Registry
	records    *memRecords // what enrollment recorded (enroll_test.go)
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith lets a test adjust the dependencies before the routes are
// built.
func newFixtureWith(t testing.TB, adjust func(f *fixture, d *Deps)) *fixture {
	t.Helper()
	// The fake starts at the real time because TLS handshakes verify against it.
	clk := clock.NewFake(time.Now())
	f := &fixture{ca: newTestCA(t, clk), store: &fakePinger{}, hsm: &fakePinger{}, logs: &syncBuffer{}, clock: clk, reg: prometheus.NewRegistry()}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := Deps{
		Log: log, Clock: clk, Store: f.store, Keys: f.hsm, Anchors: f.ca,
		Metrics: f.reg, BodyLimit: 1024, ReadyTimeout: 200 * time.Millisecond,
		Trust:  fixtureTrust(f.ca),
		Policy: testPolicy(t), Verifier: enroll.NewVerifier(clk),
	}
	d.Enroll = fixtureEnroll(t, f)
	d.Authz = AuthzDeps{Policy: fixtureAuthzPolicy(t)} // routes only (authz_test.go)
	if adjust != nil {
		adjust(f, &d)
	}
	rt, err := NewRoutes(d)
	if err != nil {
		t.Fatal(err)
	}
	f.routes = rt
	return f
}

var errBoom = errors.New("boom: secret internal detail")

// testPolicy is a minimal valid policy for fixtures that do not enroll.
func testPolicy(t testing.TB) *policy.Holder {
	t.Helper()
	p, err := policy.Parse([]byte("trust_domain: example.org\n"))
	if err != nil {
		t.Fatal(err)
	}
	return policy.NewHolder(p)
}
