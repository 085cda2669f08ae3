package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// bundleServer serves /bundle.json rendered by pkg/bundle (the CA's own
// renderer), switchable between versions, or 503 when down.
type bundleServer struct {
	*httptest.Server
	body atomic.Pointer[[]byte]
	down atomic.Bool
	hits atomic.Int64
	seq  int64
	hint time.Duration
}

func newBundleServer(t *testing.T, hint time.Duration) *bundleServer {
	t.Helper()
	b := &bundleServer{hint: hint}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body := b.body.Load()
		if b.down.Load() || body == nil || r.URL.Path != "/bundle.json" {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*body)
	}))
	t.Cleanup(b.Close)
	return b
}

// publish makes anchors the served bundle, with the next sequence number.
func (b *bundleServer) publish(t *testing.T, anchors ...*x509.Certificate) {
	t.Helper()
	content, err := bundle.NewContent(anchors, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.seq++
	body, err := bundle.RenderJSON(content, b.seq, b.hint)
	if err != nil {
		t.Fatal(err)
	}
	b.body.Store(&body)
}

func newHTTPBundle(t *testing.T, url string, clk *clock.Fake, cache string) *mtls.HTTPBundle {
	t.Helper()
	hb, err := mtls.NewHTTPBundle(context.Background(), mtls.HTTPBundleConfig{
		URL: url + "/bundle.json", TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		Clock: clk, CacheFile: cache, RetryInterval: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return hb
}

// TestALongRunningServerFollowsABundleRotation runs one server, built once,
// while the CA rotates: a new intermediate under the same root is accepted
// at once; a new root is accepted from the first refresh after the CA
// publishes the overlapping bundle (at the refresh hint, not before), both
// old and new peers are accepted during the overlap, and old peers are
// refused with unknown_ca once the old root leaves the bundle. When the CA
// becomes unreachable the last good bundle stays in force.
func TestALongRunningServerFollowsABundleRotation(t *testing.T) {
	clk := clock.NewFake(t0)
	const hint = 5 * time.Minute
	caA, err := testca.New(testca.Options{Now: t0, Name: "gen A"})
	if err != nil {
		t.Fatal(err)
	}
	caA2, err := caA.Rotate("gen A, intermediate 2")
	if err != nil {
		t.Fatal(err)
	}
	caB, err := testca.New(testca.Options{Now: t0, Name: "gen B"})
	if err != nil {
		t.Fatal(err)
	}
	peer := "spiffe://example.org/svc/peer"
	issue := func(ca *testca.CA) *tls.Certificate {
		c, err := ca.Issue(testca.Leaf{SPIFFEID: peer})
		if err != nil {
			t.Fatal(err)
		}
		return c.TLSCertificate()
	}
	srvCert, fromA, fromA2, fromB := issue(caA), issue(caA), issue(caA2), issue(caB)

	bs := newBundleServer(t, hint)
	bs.publish(t, caA.Root)
	hb := newHTTPBundle(t, bs.URL, clk, "")
	rec := &recorder{}
	srv := startServer(t, mustServer(t, mtls.Config{
		Bundles: hb, Identity: mtls.StaticIdentity{Cert: srvCert}, Clock: clk, OnReject: rec.add,
		Authorize: mtls.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString("example.org")),
	}))
	// Clients trust both roots; this test is about the server.
	both := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("example.org"), []*x509.Certificate{caA.Root, caB.Root})
	client := func(c *tls.Certificate) *tls.Config {
		return mustClient(t, mtls.Config{Bundles: both, Identity: mtls.StaticIdentity{Cert: c}, Clock: clk, Authorize: mtls.AuthorizeAny()})
	}
	expect := func(step string, c *tls.Certificate, want mtls.Reason) {
		t.Helper()
		_ = dial(t, srv.addr, client(c))
		err := srv.result(t)
		if want == "" {
			if err != nil {
				t.Errorf("%s: refused: %v", step, err)
			}
			return
		}
		if got, ok := mtls.Classify(err); !ok || got.Reason != want {
			t.Errorf("%s: Classify(%v) = %+v, want %s", step, err, got, want)
		}
		rec.take()
	}

	expect("old root, old intermediate", fromA, "")
	expect("old root, new intermediate (no bundle change needed)", fromA2, "")
	expect("new root before it is published", fromB, mtls.ReasonUnknownCA)

	bs.publish(t, caA.Root, caB.Root)
	clk.Advance(hint - time.Second)
	hits := bs.hits.Load()
	expect("new root published but the refresh hint has not passed", fromB, mtls.ReasonUnknownCA)
	if bs.hits.Load() != hits {
		t.Error("the bundle was fetched before its refresh hint")
	}
	clk.Advance(time.Second)
	expect("overlap: new root after the refresh", fromB, "")
	expect("overlap: old root, old intermediate", fromA, "")
	expect("overlap: old root, new intermediate", fromA2, "")
	if seq, _ := sequence(hb); seq != 2 {
		t.Errorf("sequence = %d, want 2", seq)
	}

	bs.publish(t, caB.Root)
	clk.Advance(hint)
	expect("after the overlap: old root", fromA, mtls.ReasonUnknownCA)
	expect("after the overlap: new root", fromB, "")

	bs.down.Store(true)
	clk.Advance(hint)
	expect("CA unreachable: last good bundle kept", fromB, "")
	if err := hb.LastError(); !errors.Is(err, mtls.ErrBundleUnavailable) {
		t.Errorf("LastError = %v, want ErrBundleUnavailable", err)
	}
	hits = bs.hits.Load()
	clk.Advance(10 * time.Second)
	expect("CA unreachable: no refetch before the retry interval", fromB, "")
	if bs.hits.Load() != hits {
		t.Error("a failed refresh was retried before RetryInterval")
	}
	bs.down.Store(false)
	clk.Advance(20 * time.Second)
	expect("CA back", fromB, "")
	if err := hb.LastError(); err != nil {
		t.Errorf("LastError after recovery = %v", err)
	}
}

func sequence(hb *mtls.HTTPBundle) (uint64, bool) {
	b, _ := hb.Current()
	return b.SequenceNumber()
}

func TestHTTPBundle(t *testing.T) {
	caA, err := testca.New(testca.Options{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	t.Run("an unreachable CA at start falls back to the cache file the last run wrote", func(t *testing.T) {
		cache := filepath.Join(t.TempDir(), "bundle.json")
		bs := newBundleServer(t, time.Minute)
		bs.publish(t, caA.Root)
		newHTTPBundle(t, bs.URL, clock.NewFake(t0), cache)
		bs.down.Store(true)
		hb := newHTTPBundle(t, bs.URL, clock.NewFake(t0), cache)
		xb, err := hb.GetX509BundleForTrustDomain(td)
		if err != nil || !xb.HasX509Authority(caA.Root) {
			t.Fatalf("cached bundle: %v, %v", xb, err)
		}
	})
	t.Run("an unreachable CA at start without a cache is ErrBundleUnavailable", func(t *testing.T) {
		bs := newBundleServer(t, time.Minute)
		_, err := mtls.NewHTTPBundle(context.Background(), mtls.HTTPBundleConfig{URL: bs.URL + "/bundle.json", TrustDomain: td})
		if !errors.Is(err, mtls.ErrBundleUnavailable) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("another trust domain has no bundle", func(t *testing.T) {
		bs := newBundleServer(t, time.Minute)
		bs.publish(t, caA.Root)
		hb := newHTTPBundle(t, bs.URL, clock.NewFake(t0), "")
		if _, err := hb.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.org")); err == nil {
			t.Error("a bundle for other.org")
		}
	})
	t.Run("a bundle that does not parse is ErrBundleInvalid and keeps the last good one", func(t *testing.T) {
		bs := newBundleServer(t, time.Minute)
		bs.publish(t, caA.Root)
		hb := newHTTPBundle(t, bs.URL, clock.NewFake(t0), "")
		garbage := []byte(`{"keys": "no"}`)
		bs.body.Store(&garbage)
		if err := hb.Refresh(context.Background()); !errors.Is(err, mtls.ErrBundleInvalid) {
			t.Errorf("Refresh = %v", err)
		}
		if xb, _ := hb.GetX509BundleForTrustDomain(td); !xb.HasX509Authority(caA.Root) {
			t.Error("last good bundle lost")
		}
	})
	t.Run("PEM bundles parse too", func(t *testing.T) {
		b, err := mtls.ParseBundle(td, testca.CertsPEM(caA.Root))
		if err != nil || !b.HasX509Authority(caA.Root) {
			t.Errorf("ParseBundle(PEM) = %v, %v", b, err)
		}
	})
}
