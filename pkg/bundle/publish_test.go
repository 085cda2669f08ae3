package bundle_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

var backends = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"Postgres", func(t *testing.T) store.Store { return testkit.Postgres(t) }},
	{"SQLite", func(t *testing.T) store.Store { return testkit.SQLite(t) }},
}

func newPublisher(t *testing.T, st store.Store, clk clock.Clock, jwt bundle.JWTKeySource) *bundle.Publisher {
	t.Helper()
	p, err := bundle.NewPublisher(bundle.Deps{Store: st, Clock: clk, JWTKeys: jwt, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustPublish(t *testing.T, p *bundle.Publisher, o bundle.PublishOptions) bundle.PublishResult {
	t.Helper()
	res, err := p.Publish(context.Background(), o)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return res
}

func anchorsOf(t *testing.T, v store.BundleVersion) [][]byte {
	t.Helper()
	c, err := bundle.ParseContent(v.Content)
	if err != nil {
		t.Fatalf("version %d: %v", v.Sequence, err)
	}
	return c.X509Authorities
}

func TestPublishStoresOnlyChanges(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st := b.open(t)
			clk := clock.NewFake(t0)
			p := newPublisher(t, st, clk, staticJWT{jwtKey(t, "jwt-1")})

			a := selfSigned(t, "root a", t0, true)
			insertRoot(t, st, "a", a, store.IssuerActive, t0)
			first := mustPublish(t, p, bundle.PublishOptions{Actor: "init"})
			if !first.Changed || first.Version.Sequence != 1 || len(anchorsOf(t, first.Version)) != 1 {
				t.Fatalf("first Publish = %+v", first)
			}
			if again := mustPublish(t, p, bundle.PublishOptions{}); again.Changed || again.Version.Sequence != 1 {
				t.Errorf("Publish without changes = %+v; want version 1 unchanged", again)
			}

			clk.Advance(time.Minute)
			nb := selfSigned(t, "root b", t0, true)
			insertRoot(t, st, "b", nb, store.IssuerPrepared, clk.Now())
			second := mustPublish(t, p, bundle.PublishOptions{})
			if !second.Changed || second.Version.Sequence != 2 || len(anchorsOf(t, second.Version)) != 2 {
				t.Fatalf("Publish after a prepared root = %+v; want version 2 with both roots", second)
			}
			if err := st.SetIssuerState(ctx, "a", store.IssuerActive, store.IssuerRetired, clk.Now()); err != nil {
				t.Fatal(err)
			}
			third := mustPublish(t, p, bundle.PublishOptions{})
			if got := anchorsOf(t, third.Version); third.Version.Sequence != 3 || len(got) != 1 || !bytes.Equal(got[0], nb.Raw) {
				t.Fatalf("Publish after retiring a root = %+v; want version 3 with only root b", third)
			}
			c, _ := bundle.ParseContent(third.Version.Content)
			if len(c.JWTAuthorities) != 1 || c.JWTAuthorities[0].KeyID != "jwt-1" {
				t.Errorf("JWT keys of the source not published: %+v", c.JWTAuthorities)
			}
		})
	}
}

func TestBadPushIsRolledBack(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st := b.open(t)
			clk := clock.NewFake(t0)
			p := newPublisher(t, st, clk, nil)

			if _, err := p.Rollback(ctx, bundle.RollbackOptions{ToSequence: 1, Actor: "admin"}); !errors.Is(err, bundle.ErrNoBundle) {
				t.Errorf("Rollback with nothing published: %v, want ErrNoBundle", err)
			}
			good := selfSigned(t, "good root", t0, true)
			insertRoot(t, st, "good", good, store.IssuerActive, t0)
			v1 := mustPublish(t, p, bundle.PublishOptions{}).Version

			// The bad push: a wrong root gets recorded and published.
			clk.Advance(time.Minute)
			bad := selfSigned(t, "bad root", t0, true)
			insertRoot(t, st, "bad", bad, store.IssuerActive, clk.Now())
			v2 := mustPublish(t, p, bundle.PublishOptions{}).Version
			if len(anchorsOf(t, v2)) != 2 {
				t.Fatalf("bad push not published: %+v", v2)
			}

			for _, to := range []int64{0, -1, v2.Sequence, v2.Sequence + 5} {
				if _, err := p.Rollback(ctx, bundle.RollbackOptions{ToSequence: to, Actor: "admin"}); !errors.Is(err, bundle.ErrInvalidRollback) {
					t.Errorf("Rollback(%d): %v, want ErrInvalidRollback", to, err)
				}
			}
			clk.Advance(time.Minute)
			v3, err := p.Rollback(ctx, bundle.RollbackOptions{ToSequence: v1.Sequence, Actor: "admin@example.org", RequestID: "req-rb"})
			if err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			if v3.Sequence <= v2.Sequence || v3.RolledBackFrom != v1.Sequence || !bytes.Equal(v3.Content, v1.Content) {
				t.Fatalf("rollback version = %+v; want v1's content under a sequence above %d", v3, v2.Sequence)
			}

			// Pinned: automatic publication keeps the rollback while the
			// issuers are unchanged.
			if res := mustPublish(t, p, bundle.PublishOptions{}); !res.Pinned || res.Changed || res.Version.Sequence != v3.Sequence {
				t.Errorf("Publish after a rollback = %+v; want the rollback pinned", res)
			}
			// An operator may override the pin.
			forced := mustPublish(t, p, bundle.PublishOptions{Force: true, Actor: "admin"})
			if !forced.Changed || len(anchorsOf(t, forced.Version)) != 2 {
				t.Errorf("forced Publish = %+v; want the computed bundle", forced)
			}
			v5, err := p.Rollback(ctx, bundle.RollbackOptions{ToSequence: v3.Sequence, Actor: "admin"})
			if err != nil || !bytes.Equal(v5.Content, v1.Content) {
				t.Fatalf("second Rollback = %+v, %v", v5, err)
			}
			// The next issuer state change ends the pin.
			if err := st.SetIssuerState(ctx, "bad", store.IssuerActive, store.IssuerRetired, clk.Now()); err != nil {
				t.Fatal(err)
			}
			if res := mustPublish(t, p, bundle.PublishOptions{}); res.Pinned || res.Changed {
				t.Errorf("Publish after the bad root was retired = %+v; the content equals the rollback, so nothing new and no pin", res)
			}
			insertRoot(t, st, "next", selfSigned(t, "next root", t0, true), store.IssuerPrepared, clk.Now())
			if res := mustPublish(t, p, bundle.PublishOptions{}); !res.Changed || len(anchorsOf(t, res.Version)) != 2 {
				t.Errorf("Publish after a new root = %+v", res)
			}

			entries, err := st.AuditEntries(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			counts := map[string]int{}
			for _, e := range entries {
				counts[e.Action]++
			}
			if counts["rollback"] != 2 || counts["publish"] != 4 {
				t.Errorf("audit actions %v; want 2 rollbacks and 4 publishes", counts)
			}
		})
	}
}

func TestAnchorPublishedSince(t *testing.T) {
	ctx := context.Background()
	st := testkit.SQLite(t)
	clk := clock.NewFake(t0)
	p := newPublisher(t, st, clk, nil)
	a, b := selfSigned(t, "a", t0, true), selfSigned(t, "b", t0, true)
	insertRoot(t, st, "a", a, store.IssuerActive, t0)
	mustPublish(t, p, bundle.PublishOptions{}) // v1 {a} at t0
	clk.Advance(time.Hour)
	insertRoot(t, st, "b", b, store.IssuerPrepared, clk.Now())
	mustPublish(t, p, bundle.PublishOptions{}) // v2 {a, b} at t0+1h
	clk.Advance(time.Hour)
	if _, err := p.Rollback(ctx, bundle.RollbackOptions{ToSequence: 1, Actor: "admin"}); err != nil { // v3 {a} at t0+2h
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	mustPublish(t, p, bundle.PublishOptions{Force: true}) // v4 {a, b} at t0+3h

	cases := []struct {
		name  string
		der   []byte
		since time.Time
		ok    bool
	}{
		{"an anchor in every version counts from the first", a.Raw, t0, true},
		{"a rollback that dropped an anchor restarts its clock", b.Raw, t0.Add(3 * time.Hour), true},
		{"an anchor never published is not published", selfSigned(t, "c", t0, true).Raw, time.Time{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			since, ok, err := p.AnchorPublishedSince(ctx, c.der)
			if err != nil || ok != c.ok || !since.Equal(c.since) {
				t.Errorf("AnchorPublishedSince = %v, %v, %v; want %v, %v", since, ok, err, c.since, c.ok)
			}
		})
	}
}

// TestConcurrentPublishOnPostgres runs two publishers on separate
// connections to one database, as two replicas would, while issuers change.
func TestConcurrentPublishOnPostgres(t *testing.T) {
	ctx := context.Background()
	url := testkit.PostgresURL(t)
	const replicas, rounds = 2, 10
	clk := clock.NewFake(t0)
	var stores []store.Store
	for range replicas {
		st, err := storeopen.Open(ctx, url)
		if err != nil {
			t.Fatalf("open replica store: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		stores = append(stores, st)
	}
	var wg sync.WaitGroup
	for r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := newPublisher(t, stores[r], clk, nil)
			var last int64
			for i := range rounds {
				c := selfSigned(t, fmt.Sprintf("root %d/%d", r, i), t0, true)
				if err := stores[r].InsertIssuer(ctx, store.Issuer{
					ID: fmt.Sprintf("r%d-%d", r, i), Kind: store.KindRoot, KeyURI: "softkey:x", CertDER: c.Raw,
					State: store.IssuerActive, CreatedAt: t0, UpdatedAt: t0,
				}); err != nil {
					t.Errorf("InsertIssuer: %v", err)
					return
				}
				res, err := p.Publish(ctx, bundle.PublishOptions{Actor: fmt.Sprintf("replica-%d", r)})
				if err != nil {
					t.Errorf("replica %d Publish: %v", r, err)
					return
				}
				if res.Version.Sequence < last || (res.Changed && res.Version.Sequence == last) {
					t.Errorf("replica %d saw sequence %d after %d", r, res.Version.Sequence, last)
				}
				last = res.Version.Sequence
			}
		}()
	}
	wg.Wait()
	// One more publish sees everything.
	final := mustPublish(t, newPublisher(t, stores[0], clk, nil), bundle.PublishOptions{})
	if n := len(anchorsOf(t, final.Version)); n != replicas*rounds {
		t.Fatalf("final bundle has %d anchors, want %d", n, replicas*rounds)
	}
	versions, err := stores[0].ListBundleVersions(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range versions {
		if want := final.Version.Sequence - int64(i); v.Sequence != want {
			t.Fatalf("stored sequences not contiguous: position %d has %d, want %d", i, v.Sequence, want)
		}
		if i+1 < len(versions) && bytes.Equal(v.Content, versions[i+1].Content) {
			t.Errorf("versions %d and %d have identical content", v.Sequence, versions[i+1].Sequence)
		}
	}
	t.Logf("%d replicas x %d issuer changes produced %d versions", replicas, rounds, len(versions))
}
