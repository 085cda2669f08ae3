package issuer

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// rotationRig is a CA on real components with a fake clock, a bundle
// publisher, a Rotator and a reloading Current, as `ca serve` wires them.
type rotationRig struct {
	t     *testing.T
	ctx   context.Context
	clk   *clock.Fake
	st    store.Store
	pub   *bundle.Publisher
	rot   *Rotator
	cur   *Current
	cache *bundle.Cache
}

const testOverlap = time.Hour

func newRotationRig(t *testing.T, keys KeyStore, st store.Store) *rotationRig {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	d := Deps{Keys: keys, Store: st, Clock: clk, Log: slog.New(slog.DiscardHandler)}
	cfg := integrationConfig()
	if _, err := Init(ctx, d, cfg); err != nil {
		t.Fatalf("Init: %v", err)
	}
	pub, err := bundle.NewPublisher(bundle.Deps{Store: st, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, bundle.PublishOptions{Reason: "init"}); err != nil {
		t.Fatalf("first Publish: %v", err)
	}
	rot, err := NewRotator(RotatorDeps{Keys: keys, Store: st, Bundles: pub, Clock: clk}, cfg, RotationConfig{Overlap: testOverlap})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := NewCurrent(ctx, d, cfg, time.Second)
	if err != nil {
		t.Fatalf("NewCurrent: %v", err)
	}
	cache := bundle.NewCache(st, clk, nil, bundle.ServeConfig{RefreshHint: 5 * time.Minute, Recheck: time.Second})
	return &rotationRig{t: t, ctx: ctx, clk: clk, st: st, pub: pub, rot: rot, cur: cur, cache: cache}
}

// advance moves the clock past the Current's and the Cache's recheck too.
func (r *rotationRig) advance(d time.Duration) { r.clk.Advance(d) }

func (r *rotationRig) issue(id string, ttl time.Duration) *Issued {
	r.t.Helper()
	got, err := r.cur.Issue(r.ctx, Request{PublicKey: newP256(r.t).Public(), SPIFFEID: "spiffe://example.org/" + id, TTL: ttl, Actor: "test"})
	if err != nil {
		r.t.Fatalf("Issue(%s): %v", id, err)
	}
	return got
}

func (r *rotationRig) tick() TickResult {
	r.t.Helper()
	res, err := r.rot.Tick(r.ctx)
	if err != nil {
		r.t.Fatalf("Tick: %v", err)
	}
	return res
}

// published fetches what the server would serve and parses bundle.json the
// way a SPIFFE relying party does.
func (r *rotationRig) published() (*bundle.Published, *spiffebundle.Bundle) {
	r.t.Helper()
	p, err := r.cache.Current(r.ctx)
	if err != nil {
		r.t.Fatalf("Cache.Current: %v", err)
	}
	sb, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), p.JSON)
	if err != nil {
		r.t.Fatalf("spiffebundle.Parse(bundle.json seq %d): %v\n%s", p.Sequence, err, p.JSON)
	}
	if seq, ok := sb.SequenceNumber(); !ok || int64(seq) != p.Sequence {
		r.t.Errorf("spiffe_sequence = %d, %v; want %d", seq, ok, p.Sequence)
	}
	return p, sb
}

// verifiesWith checks the leaf against a SPIFFE bundle (x509svid.Verify,
// with its chain as the peer would send it).
func (r *rotationRig) verifiesWith(sb *spiffebundle.Bundle, got *Issued) error {
	chain := []*x509.Certificate{got.Certificate}
	for _, der := range got.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			r.t.Fatal(err)
		}
		chain = append(chain, c)
	}
	_, _, err := x509svid.Verify(chain, sb, x509svid.WithTime(r.clk.Now()))
	return err
}

func rootIDs(t *testing.T, st store.Store) map[string]store.IssuerState {
	t.Helper()
	list, err := st.ListIssuers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.IssuerState{}
	for _, is := range list {
		m[is.ID] = is.State
	}
	return m
}

func wantStates(t *testing.T, st store.Store, want map[string]store.IssuerState) {
	t.Helper()
	got := rootIDs(t, st)
	for id, s := range want {
		if got[id] != s {
			t.Errorf("issuer %s is %q, want %q (all: %v)", id, got[id], s, got)
		}
	}
}

func anchorCNs(p *bundle.Published) []string {
	var cns []string
	for _, a := range p.Anchors {
		cns = append(cns, a.Subject.CommonName)
	}
	return cns
}

func TestRotationDrillIntermediate(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			keys, st := b.open(t)
			r := newRotationRig(t, keys, st)
			before, _ := r.published()

			old := r.issue("old", 4*time.Hour)
			res, err := r.rot.Rotate(r.ctx, RotateOptions{Actor: "admin@example.org", RequestID: "req-rotate"})
			if err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			if res.Intermediate.ID != "int-2" || res.Intermediate.State != store.IssuerPrepared || res.Root != nil {
				t.Fatalf("Rotate prepared %+v", res)
			}
			if res.Bundle.Sequence != before.Sequence {
				t.Errorf("an intermediate rotation under the same root published version %d (was %d); the anchors did not change", res.Bundle.Sequence, before.Sequence)
			}
			if _, err := r.rot.Rotate(r.ctx, RotateOptions{}); !errors.Is(err, ErrRotationInProgress) {
				t.Errorf("second Rotate: %v, want ErrRotationInProgress", err)
			}

			r.advance(testOverlap - time.Minute)
			if got := r.tick(); len(got.Activated) != 0 {
				t.Fatalf("activated %v before the overlap", got.Activated)
			}
			if _, err := r.rot.Activate(r.ctx, ActivateOptions{Actor: "admin"}); !errors.Is(err, ErrNotReady) {
				t.Errorf("Activate before the overlap: %v, want ErrNotReady", err)
			}
			if id := r.cur.Get(r.ctx).ActiveIssuerID(); id != "int-1" {
				t.Fatalf("signing with %s before activation", id)
			}

			r.advance(2 * time.Minute)
			got := r.tick()
			if !slices.Equal(got.Activated, []string{"int-2"}) || !slices.Equal(got.Retiring, []string{"int-1"}) {
				t.Fatalf("Tick after the overlap = %+v", got)
			}
			wantStates(t, st, map[string]store.IssuerState{"root-1": store.IssuerActive, "int-1": store.IssuerRetiring, "int-2": store.IssuerActive})
			r.advance(2 * time.Second) // past the Current's recheck
			fresh := r.issue("new", time.Hour)
			if fresh.IssuerID != "int-2" {
				t.Fatalf("a running Current still signs with %s after activation", fresh.IssuerID)
			}
			// During the overlap both generations verify against the bundle.
			_, sb := r.published()
			for name, leaf := range map[string]*Issued{"old": old, "new": fresh} {
				if err := r.verifiesWith(sb, leaf); err != nil {
					t.Errorf("%s leaf does not verify against the published bundle: %v", name, err)
				}
			}

			// Draining: the old intermediate stays retiring while its leaf lives
			// (and MaxTTL+grace after activation), then is retired.
			r.advance(3 * time.Hour)
			if got := r.tick(); len(got.Retired) != 0 {
				t.Fatalf("retired %v while leaves may still be signed by stale replicas", got.Retired)
			}
			r.advance(integrationConfigMaxTTL())
			got = r.tick()
			if !slices.Equal(got.Retired, []string{"int-1"}) {
				t.Fatalf("Tick after draining = %+v, want int-1 retired", got)
			}
			wantStates(t, st, map[string]store.IssuerState{"root-1": store.IssuerActive, "int-1": store.IssuerRetired, "int-2": store.IssuerActive})
			if again := r.tick(); again.changed() || again.Published {
				t.Errorf("an idle Tick changed something: %+v", again)
			}
			wantAudit(t, st, "rotate", "activate", "retire")
		})
	}
}

func integrationConfigMaxTTL() time.Duration {
	cfg := integrationConfig()
	_ = cfg.Validate()
	return cfg.MaxTTL + DefaultRetireGrace
}

func TestRotationDrillRootWithCrossSigning(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			keys, st := b.open(t)
			r := newRotationRig(t, keys, st)
			v1, _ := r.published()
			oldRoot := v1.Anchors[0]
			old := r.issue("old", 2*time.Hour)

			res, err := r.rot.Rotate(r.ctx, RotateOptions{Root: true, Actor: "admin@example.org"})
			if err != nil {
				t.Fatalf("Rotate(root): %v", err)
			}
			if res.Root == nil || res.CrossCertificate == nil || res.Intermediate.ParentID != res.Root.ID || res.CrossCertificate.ParentID != "root-1" {
				t.Fatalf("Rotate(root) = %+v", res)
			}
			// Both roots are published before anything under the new one signs.
			r.advance(2 * time.Second)
			v2, _ := r.published()
			if v2.Sequence <= v1.Sequence || len(v2.Anchors) != 2 {
				t.Fatalf("after Rotate(root) the bundle is version %d with anchors %v; want a newer version with both roots", v2.Sequence, anchorCNs(v2))
			}
			newRoot, err := x509.ParseCertificate(res.Root.CertDER)
			if err != nil {
				t.Fatal(err)
			}

			r.advance(testOverlap)
			got := r.tick()
			slices.Sort(got.Activated)
			slices.Sort(got.Retiring)
			if !slices.Equal(got.Activated, []string{"int-2", "root-2", "xc-2"}) || !slices.Equal(got.Retiring, []string{"int-1", "root-1"}) {
				t.Fatalf("Tick after the overlap = %+v", got)
			}
			r.advance(2 * time.Second)
			fresh := r.issue("new", time.Hour)
			if fresh.IssuerID != "int-2" || len(fresh.Chain) != 2 {
				t.Fatalf("new leaf from %s with %d chain certificates; want int-2 with its cross-certificate", fresh.IssuerID, len(fresh.Chain))
			}
			// A relying party with only the old root, and one with only the new.
			for name, root := range map[string]*x509.Certificate{"old root only": oldRoot, "new root only": newRoot} {
				pool := x509.NewCertPool()
				pool.AddCert(root)
				verifyLeaf(t, pool, fresh.Certificate, fresh.Chain, r.clk.Now())
				t.Logf("%s: new leaf verifies", name)
			}
			_, sb := r.published()
			for name, leaf := range map[string]*Issued{"old": old, "new": fresh} {
				if err := r.verifiesWith(sb, leaf); err != nil {
					t.Errorf("%s leaf does not verify against the published bundle during the overlap: %v", name, err)
				}
			}

			// Drain the old chain: int-1, then root-1 with the cross-certificate.
			r.advance(integrationConfigMaxTTL() + time.Minute)
			got = r.tick()
			slices.Sort(got.Retired)
			if !slices.Equal(got.Retired, []string{"int-1", "root-1", "xc-2"}) || !got.Published {
				t.Fatalf("Tick after draining = %+v; want int-1, root-1 and xc-2 retired and a new bundle", got)
			}
			r.advance(2 * time.Second)
			v3, sb := r.published()
			if v3.Sequence <= v2.Sequence || len(v3.Anchors) != 1 || !v3.Anchors[0].Equal(newRoot) {
				t.Fatalf("after draining: version %d with anchors %v; want a newer version with only the new root", v3.Sequence, anchorCNs(v3))
			}
			later := r.issue("later", time.Hour)
			if len(later.Chain) != 1 {
				t.Errorf("after the old root retired the chain still has %d certificates", len(later.Chain))
			}
			if err := r.verifiesWith(sb, later); err != nil {
				t.Errorf("leaf under the new root does not verify against the final bundle: %v", err)
			}
			wantAudit(t, st, "rotate", "activate", "retire", "publish")
		})
	}
}

func wantAudit(t *testing.T, st store.Store, actions ...string) {
	t.Helper()
	entries, err := st.AuditEntries(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var prev []byte
	for _, e := range entries {
		seen[e.Action] = true
		if h := store.AuditHash(prev, e); string(h) != string(e.Hash) {
			t.Fatalf("audit entry %d does not chain", e.Seq)
		}
		prev = e.Hash
	}
	for _, a := range actions {
		if !seen[a] {
			t.Errorf("no %q audit entry", a)
		}
	}
}
