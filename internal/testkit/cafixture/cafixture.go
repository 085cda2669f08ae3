package cafixture

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"log/slog"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// TrustDomain and PublicURL are the fixture CA's.
const (
	TrustDomain = "example.org"
	PublicURL   = "http://127.0.0.1:8080"
)

// CA is an initialised CA: its collaborators, its configuration, the loaded
// Issuer and the root certificate.
type CA struct {
	Keys   issuer.KeyStore
	Store  store.Store
	Clock  clock.Clock
	Deps   issuer.Deps
	Config issuer.Config
	Issuer *issuer.Issuer
	Root   *x509.Certificate
}

// New initialises a root and an intermediate on keys and st (issuer.Init,
// trust domain TrustDomain, PublicURL) and loads the Issuer. log may be nil
// (discarded).
func New(t testing.TB, keys issuer.KeyStore, st store.Store, clk clock.Clock, log *slog.Logger) *CA {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx := context.Background()
	d := issuer.Deps{Keys: keys, Store: st, Clock: clk, Log: log}
	cfg := issuer.Config{TrustDomain: TrustDomain, PublicURL: PublicURL}
	res, err := issuer.Init(ctx, d, cfg)
	if err != nil {
		t.Fatalf("cafixture: issuer.Init: %v", err)
	}
	iss, err := issuer.Load(ctx, d, cfg)
	if err != nil {
		t.Fatalf("cafixture: issuer.Load: %v", err)
	}
	root, err := x509.ParseCertificate(res.Root.CertDER)
	if err != nil {
		t.Fatalf("cafixture: the root: %v", err)
	}
	return &CA{Keys: keys, Store: st, Clock: clk, Deps: d, Config: cfg, Issuer: iss, Root: root}
}

// NewSQLite is New on software keys and a fresh SQLite store, with a fake
// clock at the current second.
func NewSQLite(t testing.TB) *CA {
	t.Helper()
	return New(t, testkit.SoftwareKeys(t), testkit.SQLite(t), clock.NewFake(time.Now().UTC().Truncate(time.Second)), nil)
}

// Leaf issues a P-256 leaf for spiffeID through the real issuer.
func (c *CA) Leaf(t testing.TB, spiffeID string, ttl time.Duration) *issuer.Issued {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Issuer.Issue(context.Background(), issuer.Request{
		PublicKey: k.Public(), SPIFFEID: spiffeID, TTL: ttl,
		PolicyRule: "test", PolicyVersion: "v1", Actor: "test", RequestID: "req-test",
	})
	if err != nil {
		t.Fatalf("cafixture: Issue(%s): %v", spiffeID, err)
	}
	return got
}
