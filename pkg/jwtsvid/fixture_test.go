package jwtsvid_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/jwtsvid"
	"github.com/workload-ca/workload-ca/pkg/store"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

const refreshHint = 5 * time.Minute

// ca is the signing side on SQLite and software keys, with /bundle.json
// served over loopback HTTP from the latest published version.
type ca struct {
	st      store.Store
	clk     *clock.Fake
	mgr     *jwtkeys.Manager
	signer  *jwtkeys.Signer
	cfg     jwtkeys.Config
	srv     *httptest.Server
	fetches atomic.Int64
}

func newCA(t testing.TB) *ca {
	t.Helper()
	ks, err := hsm.OpenSoftware(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	c := &ca{st: testkit.SQLite(t), clk: clock.NewFake(time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC))}
	c.cfg = jwtkeys.Config{RotateEvery: time.Hour, PublishLead: 10 * time.Minute, MaxTTL: 10 * time.Minute, Grace: time.Minute, Recheck: time.Second}
	pub, err := bundle.NewPublisher(bundle.Deps{Store: c.st, JWTKeys: jwtkeys.NewPublished(c.st), Clock: c.clk})
	if err != nil {
		t.Fatal(err)
	}
	if c.mgr, err = jwtkeys.NewManager(jwtkeys.ManagerDeps{Keys: ks, Store: c.st, Bundles: pub, Clock: c.clk}, c.cfg); err != nil {
		t.Fatal(err)
	}
	if c.signer, err = jwtkeys.NewSigner(jwtkeys.SignerDeps{Keys: ks, Store: c.st, Clock: c.clk}, c.cfg); err != nil {
		t.Fatal(err)
	}
	c.tick(t)
	c.srv = httptest.NewServer(http.HandlerFunc(c.serveBundle))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *ca) serveBundle(w http.ResponseWriter, r *http.Request) {
	c.fetches.Add(1)
	v, err := c.st.LatestBundleVersion(r.Context())
	if err != nil {
		http.Error(w, "no bundle", http.StatusServiceUnavailable)
		return
	}
	etag := fmt.Sprintf(`"%d"`, v.Sequence)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	content, err := bundle.ParseContent(v.Content)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body, err := bundle.RenderJSON(content, v.Sequence, refreshHint)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (c *ca) tick(t testing.TB) jwtkeys.TickResult {
	t.Helper()
	res, err := c.mgr.Tick(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (c *ca) sign(t testing.TB, id string, ttl time.Duration, aud ...string) *jwtkeys.Token {
	t.Helper()
	tok, err := c.signer.Sign(context.Background(), jwtkeys.Request{SPIFFEID: id, Audience: aud, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// verifier is a relying party: an HTTPSource on the CA's bundle.json and a
// Verifier, on the CA's fake clock.
func (c *ca) verifier(t testing.TB) (*jwtsvid.Verifier, *jwtsvid.HTTPSource) {
	t.Helper()
	src, err := jwtsvid.NewHTTPSource(jwtsvid.HTTPSourceConfig{URL: c.srv.URL + "/bundle.json", TrustDomain: td, Clock: c.clk})
	if err != nil {
		t.Fatal(err)
	}
	v, err := jwtsvid.NewVerifier(jwtsvid.Config{TrustDomain: td, Source: src, Clock: c.clk})
	if err != nil {
		t.Fatal(err)
	}
	return v, src
}
