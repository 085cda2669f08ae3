package jwtkeys_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

var (
	_ jwtkeys.KeyStore        = (*hsm.PKCS11Store)(nil)
	_ jwtkeys.KeyStore        = (*hsm.SoftwareStore)(nil)
	_ jwtkeys.ManagerStore    = store.Store(nil)
	_ jwtkeys.SignerStore     = store.Store(nil)
	_ jwtkeys.BundlePublisher = (*bundle.Publisher)(nil)
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// backend is a key store and a database, both real.
type backend struct {
	name string
	open func(t testing.TB) (jwtkeys.KeyStore, store.Store)
}

func softwareKeys(t testing.TB) jwtkeys.KeyStore {
	ks, err := hsm.OpenSoftware(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	return ks
}

var (
	sqliteBackend = backend{"software keys and SQLite", func(t testing.TB) (jwtkeys.KeyStore, store.Store) {
		return softwareKeys(t), testkit.SQLite(t)
	}}
	softhsmBackend = backend{"SoftHSM and Postgres", func(t testing.TB) (jwtkeys.KeyStore, store.Store) {
		return testkit.SoftHSMKeyStore(t), testkit.Postgres(t)
	}}
)

// testConfig has short periods so that a rotation fits in a test.
func testConfig(kt hsm.KeyType) jwtkeys.Config {
	return jwtkeys.Config{
		KeyType: kt, RotateEvery: time.Hour, PublishLead: 10 * time.Minute,
		MaxTTL: 10 * time.Minute, Grace: time.Minute, Recheck: 10 * time.Second,
	}
}

// fixture is a manager and a signer over one backend, with the bundle
// publisher wired to publish the JWT keys.
type fixture struct {
	st     store.Store
	keys   jwtkeys.KeyStore
	clk    *clock.Fake
	pub    *bundle.Publisher
	mgr    *jwtkeys.Manager
	signer *jwtkeys.Signer
}

func newFixture(t testing.TB, b backend, cfg jwtkeys.Config, start time.Time) *fixture {
	t.Helper()
	ks, st := b.open(t)
	return newFixtureOn(t, ks, st, cfg, clock.NewFake(start))
}

func newFixtureOn(t testing.TB, ks jwtkeys.KeyStore, st store.Store, cfg jwtkeys.Config, clk *clock.Fake) *fixture {
	t.Helper()
	pub, err := bundle.NewPublisher(bundle.Deps{Store: st, JWTKeys: jwtkeys.NewPublished(st), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := jwtkeys.NewManager(jwtkeys.ManagerDeps{Keys: ks, Store: st, Bundles: pub, Clock: clk}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jwtkeys.NewSigner(jwtkeys.SignerDeps{Keys: ks, Store: st, Clock: clk}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{st: st, keys: ks, clk: clk, pub: pub, mgr: mgr, signer: signer}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (f *fixture) tick(t testing.TB) jwtkeys.TickResult {
	t.Helper()
	res, err := f.mgr.Tick(ctxT(t))
	if err != nil {
		t.Fatalf("Tick: %v", err)
	}
	return res
}

func (f *fixture) sign(t testing.TB, id string, aud ...string) *jwtkeys.Token {
	t.Helper()
	tok, err := f.signer.Sign(ctxT(t), jwtkeys.Request{SPIFFEID: id, Audience: aud, TTL: 5 * time.Minute})
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

// bundleJSON renders the latest published version as /bundle.json does.
func (f *fixture) bundleJSON(t testing.TB) []byte {
	t.Helper()
	v, err := f.st.LatestBundleVersion(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := bundle.ParseContent(v.Content)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.RenderJSON(c, v.Sequence, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// spiffeBundle parses the latest bundle as an outside relying party would.
func (f *fixture) spiffeBundle(t testing.TB) *spiffebundle.Bundle {
	t.Helper()
	b, err := spiffebundle.Parse(td, f.bundleJSON(t))
	if err != nil {
		t.Fatalf("spiffebundle.Parse: %v", err)
	}
	return b
}

func (f *fixture) states(t testing.TB) map[string]store.JWTKeyState {
	t.Helper()
	keys, err := f.mgr.Keys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.JWTKeyState{}
	for _, k := range keys {
		m[k.KeyID] = k.State
	}
	return m
}

// openPostgres opens one more store (a replica) on the database at url.
func openPostgres(t testing.TB, url string) store.Store {
	t.Helper()
	st, err := storeopen.Open(ctxT(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}
