package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
)

// t0 is the fake clock's start in unit tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// unitCA is an initialised issuer on in-memory fakes.
type unitCA struct {
	iss   *Issuer
	keys  *memKeys
	store *memStore
	clock *clock.Fake
	cfg   Config
	deps  Deps
	logs  *bytes.Buffer
}

func testConfig() Config {
	return Config{TrustDomain: "example.org", PublicURL: "http://ca.example.org:8080/"}
}

// newUnitCA runs Init and Load on fakes with cfg (testConfig() if zero).
func newUnitCA(t testing.TB, cfg Config) *unitCA {
	t.Helper()
	if cfg.TrustDomain == "" {
		cfg = testConfig()
	}
	logs := &bytes.Buffer{}
	u := &unitCA{keys: newMemKeys(), store: newMemStore(), clock: clock.NewFake(t0), cfg: cfg, logs: logs}
	u.deps = Deps{Keys: u.keys, Store: u.store, Clock: u.clock, Log: slog.New(slog.NewJSONHandler(logs, nil))}
	ctx := context.Background()
	if _, err := Init(ctx, u.deps, cfg); err != nil {
		t.Fatalf("Init: %v", err)
	}
	iss, err := Load(ctx, u.deps, cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	u.iss = iss
	return u
}

// roots returns a pool of the CA's trust anchors.
func (u *unitCA) roots(t testing.TB) *x509.CertPool {
	t.Helper()
	anchors, err := u.iss.TrustAnchors(context.Background())
	if err != nil {
		t.Fatalf("TrustAnchors: %v", err)
	}
	p := x509.NewCertPool()
	for _, c := range anchors {
		p.AddCert(c)
	}
	return p
}

func newP256(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// verifyLeaf checks the leaf chains to roots for client and server auth.
func verifyLeaf(t testing.TB, roots *x509.CertPool, leaf *x509.Certificate, chain [][]byte, at time.Time) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("parsing chain: %v", err)
		}
		inter.AddCert(c)
	}
	for _, eku := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{eku}}); err != nil {
			t.Fatalf("leaf does not verify for EKU %v: %v", eku, err)
		}
	}
}

// offlineRoot is a root CA kept outside the CA, as an operator would.
type offlineRoot struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newOfflineRoot(t testing.TB, now time.Time) *offlineRoot {
	t.Helper()
	key := newP256(t)
	ski, _ := subjectKeyID(key.Public())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000), Subject: pkix.Name{CommonName: "Offline Root", Organization: []string{"Acme"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
		SubjectKeyId: ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &offlineRoot{cert: c, key: key}
}

// sign turns a CSR into an intermediate certificate; edit may change the
// template (to make bad ones). It returns the PEM chain intermediate + root.
func (r *offlineRoot) sign(t testing.TB, csrPEM []byte, now time.Time, edit func(*x509.Certificate)) []byte {
	t.Helper()
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a CSR PEM: %q", csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	ski, _ := subjectKeyID(csr.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.Unix()), Subject: csr.Subject,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
		MaxPathLen: 0, MaxPathLenZero: true, SubjectKeyId: ski,
		PermittedURIDomains: []string{"example.org"}, PermittedDNSDomainsCritical: true,
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.cert, csr.PublicKey, r.key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.cert.Raw})...)
}
