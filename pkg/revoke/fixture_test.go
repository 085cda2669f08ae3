package revoke

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/cafixture"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// The narrow interfaces are satisfied by the real components.
var (
	_ Store           = store.Store(nil)
	_ issuer.KeyStore = (*hsm.PKCS11Store)(nil)
	_ issuer.KeyStore = (*hsm.SoftwareStore)(nil)
)

// backend is a real key store and a real store, as production wires them.
type backend struct {
	name string
	open func(t testing.TB) (issuer.KeyStore, store.Store)
}

var (
	sqliteBackend   = backend{"software keys and SQLite", func(t testing.TB) (issuer.KeyStore, store.Store) { return testkit.SoftwareKeys(t), testkit.SQLite(t) }}
	postgresBackend = backend{"software keys and Postgres", func(t testing.TB) (issuer.KeyStore, store.Store) { return testkit.SoftwareKeys(t), testkit.Postgres(t) }}
	softhsmBackend  = backend{"SoftHSM and Postgres", func(t testing.TB) (issuer.KeyStore, store.Store) {
		return testkit.SoftHSMKeyStore(t), testkit.Postgres(t)
	}}
	allBackends = []backend{sqliteBackend, postgresBackend, softhsmBackend}
)

// countingKeys wraps a key store so that every signature made with any of
// its keys is counted: the proof that answering does not sign.
type countingKeys struct {
	issuer.KeyStore
	n atomic.Int64
}

type countingSigner struct {
	crypto.Signer
	n *atomic.Int64
}

func (s countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.n.Add(1)
	return s.Signer.Sign(r, digest, opts)
}

func (k *countingKeys) wrap(key hsm.Key, err error) (hsm.Key, error) {
	if err == nil {
		key.Signer = countingSigner{key.Signer, &k.n}
	}
	return key, err
}

func (k *countingKeys) Generate(ctx context.Context, name string, kt hsm.KeyType) (hsm.Key, error) {
	return k.wrap(k.KeyStore.Generate(ctx, name, kt))
}

func (k *countingKeys) Find(ctx context.Context, uri string) (hsm.Key, error) {
	return k.wrap(k.KeyStore.Find(ctx, uri))
}

// fixture is an initialised CA on real components with a fake clock.
type fixture struct {
	t       testing.TB
	ctx     context.Context
	keys    *countingKeys
	st      store.Store
	clk     *clock.Fake
	iss     *issuer.Issuer
	root    *x509.Certificate
	inter   *x509.Certificate
	interID string
	cfg     Config
}

func newFixture(t testing.TB, b backend, cfg Config) *fixture {
	t.Helper()
	ks, st := b.open(t)
	return newFixtureOn(t, ks, st, clock.NewFake(time.Now().UTC().Truncate(time.Second)), cfg)
}

func newFixtureOn(t testing.TB, ks issuer.KeyStore, st store.Store, clk *clock.Fake, cfg Config) *fixture {
	t.Helper()
	keys := &countingKeys{KeyStore: ks}
	ca := cafixture.New(t, keys, st, clk, nil)
	return &fixture{t: t, ctx: context.Background(), keys: keys, st: st, clk: clk, iss: ca.Issuer, root: ca.Root,
		inter: ca.Issuer.Certificate(), interID: ca.Issuer.ActiveIssuerID(), cfg: cfg}
}

func (f *fixture) deps() Deps {
	return Deps{Store: f.st, Keys: f.keys, Clock: f.clk, Log: slog.New(slog.DiscardHandler)}
}

func (f *fixture) publisher() *Publisher {
	f.t.Helper()
	p, err := NewPublisher(f.deps(), f.cfg)
	if err != nil {
		f.t.Fatalf("NewPublisher: %v", err)
	}
	return p
}

func (f *fixture) revoker(p *Publisher) *Revoker {
	f.t.Helper()
	r, err := NewRevoker(f.deps(), f.cfg, p)
	if err != nil {
		f.t.Fatalf("NewRevoker: %v", err)
	}
	return r
}

func (f *fixture) responder() *Responder {
	f.t.Helper()
	r, err := NewResponder(f.deps(), f.cfg)
	if err != nil {
		f.t.Fatalf("NewResponder: %v", err)
	}
	return r
}

// leaf issues a leaf through the real issuer.
func (f *fixture) leaf(name string, ttl time.Duration) *issuer.Issued {
	f.t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	got, err := f.iss.Issue(f.ctx, issuer.Request{
		PublicKey: k.Public(), SPIFFEID: "spiffe://example.org/test/" + name, TTL: ttl,
		PolicyRule: "test", PolicyVersion: "v1", Actor: "test", RequestID: "req-" + name,
	})
	if err != nil {
		f.t.Fatalf("Issue(%s): %v", name, err)
	}
	return got
}

func (f *fixture) refresh(p *Publisher) Report {
	f.t.Helper()
	rep, err := p.RefreshOnce(f.ctx)
	if err != nil {
		f.t.Fatalf("RefreshOnce: %v", err)
	}
	return rep
}

// storedCRL reads and parses the issuer's stored CRL and checks its
// signature against the intermediate.
func (f *fixture) storedCRL() *x509.RevocationList {
	f.t.Helper()
	c, err := f.st.GetCRL(f.ctx, f.interID)
	if err != nil {
		f.t.Fatalf("GetCRL: %v", err)
	}
	rl, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		f.t.Fatalf("ParseRevocationList: %v", err)
	}
	if err := rl.CheckSignatureFrom(f.inter); err != nil {
		f.t.Fatalf("CRL signature does not verify against the intermediate: %v", err)
	}
	if rl.Number.Int64() != c.Number || c.Entries != len(rl.RevokedCertificateEntries) {
		f.t.Fatalf("stored CRL row (number %d, %d entries) differs from its DER (number %v, %d entries)", c.Number, c.Entries, rl.Number, len(rl.RevokedCertificateEntries))
	}
	return rl
}

func shortConfig() Config {
	return Config{CRLValidity: time.Hour, OCSPValidity: time.Hour, Tick: time.Second}
}
