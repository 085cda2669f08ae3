package revoke

import (
	"context"
	"crypto"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// readCounting counts the reads of stored OCSP responses and of revocation
// counters: the proof that the hot path is served from memory.
type readCounting struct {
	store.Store
	gets, seqs atomic.Int64
}

func (c *readCounting) GetOCSPResponse(ctx context.Context, serial string) (store.OCSPResponse, error) {
	c.gets.Add(1)
	return c.Store.GetOCSPResponse(ctx, serial)
}

func (c *readCounting) RevocationSeq(ctx context.Context, issuerID string) (int64, error) {
	c.seqs.Add(1)
	return c.Store.RevocationSeq(ctx, issuerID)
}

// followingResponder is a Responder on st that follows p.
func (f *fixture) followingResponder(st Store, p *Publisher) *Responder {
	f.t.Helper()
	d := f.deps()
	d.Store = st
	r, err := NewResponder(d, f.cfg)
	if err != nil {
		f.t.Fatalf("NewResponder: %v", err)
	}
	r.Follow(p)
	return r
}

func (f *fixture) status(r *Responder, serial []byte) Status {
	f.t.Helper()
	resp, err := r.Respond(f.ctx, serial)
	if err != nil {
		f.t.Fatalf("Respond: %v", err)
	}
	return resp.Status
}

func TestOCSPCache(t *testing.T) {
	for _, b := range []backend{sqliteBackend, postgresBackend} {
		t.Run(b.name, func(t *testing.T) {
			t.Run("repeated requests are answered from memory with one counter read per recheck", func(t *testing.T) {
				f := newFixture(t, b, shortConfig())
				p := f.publisher()
				leaf := f.leaf("hot", 2*time.Hour)
				f.refresh(p)
				st := &readCounting{Store: f.st}
				rs := f.followingResponder(st, p)
				req := request(t, f.inter, leaf.Certificate.SerialNumber, crypto.SHA1)
				for range 100 {
					if s := f.status(rs, req); s != StatusGood {
						t.Fatalf("status %s", s)
					}
				}
				if g, s := st.gets.Load(), st.seqs.Load(); g != 1 || s != 1 {
					t.Errorf("100 answers read %d stored responses and %d counters, want 1 and 1", g, s)
				}
				f.clk.Advance(DefaultOCSPCacheRecheck)
				f.status(rs, req)
				if g, s := st.gets.Load(), st.seqs.Load(); g != 1 || s != 2 {
					t.Errorf("after the recheck interval: %d stored reads and %d counter reads, want 1 and 2", g, s)
				}
			})

			t.Run("a revocation in this process is answered revoked as soon as Revoke returns", func(t *testing.T) {
				f := newFixture(t, b, shortConfig())
				p := f.publisher()
				rv := f.revoker(p)
				leaf := f.leaf("victim", 2*time.Hour)
				f.refresh(p)
				rs := f.followingResponder(f.st, p)
				req := request(t, f.inter, leaf.Certificate.SerialNumber, crypto.SHA1)
				if s := f.status(rs, req); s != StatusGood {
					t.Fatalf("before: %s", s)
				}
				if _, _, err := rv.Revoke(f.ctx, leaf.Serial, "keyCompromise", "op", "req"); err != nil {
					t.Fatal(err)
				}
				if s := f.status(rs, req); s != StatusRevoked {
					t.Errorf("right after Revoke (same clock instant): %s, want revoked", s)
				}
			})

			t.Run("another replica's revocation is answered revoked within the recheck interval", func(t *testing.T) {
				f := newFixture(t, b, shortConfig())
				pA, pB := f.publisher(), f.publisher()
				rvB := f.revoker(pB)
				leaf := f.leaf("elsewhere", 2*time.Hour)
				f.refresh(pA)
				rsA := f.followingResponder(f.st, pA)
				req := request(t, f.inter, leaf.Certificate.SerialNumber, crypto.SHA1)
				if s := f.status(rsA, req); s != StatusGood {
					t.Fatalf("before: %s", s)
				}
				if _, _, err := rvB.Revoke(f.ctx, leaf.Serial, "keyCompromise", "op", "req"); err != nil {
					t.Fatal(err)
				}
				f.clk.Advance(DefaultOCSPCacheRecheck)
				if s := f.status(rsA, req); s != StatusRevoked {
					t.Errorf("one recheck interval after another replica's revocation: %s, want revoked", s)
				}
			})

			t.Run("a replica's OCSP never lags the CRL it serves", func(t *testing.T) {
				f := newFixture(t, b, shortConfig())
				pA, pB := f.publisher(), f.publisher()
				rvB := f.revoker(pB)
				leaf := f.leaf("crl-first", 2*time.Hour)
				f.refresh(pA)
				rsA := f.followingResponder(f.st, pA)
				if _, err := rsA.CRL(f.ctx, f.interID); err != nil {
					t.Fatal(err)
				}
				req := request(t, f.inter, leaf.Certificate.SerialNumber, crypto.SHA1)
				if s := f.status(rsA, req); s != StatusGood {
					t.Fatalf("before: %s", s)
				}
				if _, _, err := rvB.Revoke(f.ctx, leaf.Serial, "keyCompromise", "op", "req"); err != nil {
					t.Fatal(err)
				}
				f.refresh(pB)
				if _, err := rsA.CRL(f.ctx, f.interID); err != nil {
					t.Fatal(err)
				}
				if s := f.status(rsA, req); s != StatusRevoked {
					t.Errorf("after serving the CRL that lists it (same instant): %s, want revoked", s)
				}
			})

			t.Run("a stored good response contradicted by a committed revocation is never cached", func(t *testing.T) {
				f := newFixture(t, b, shortConfig())
				p := f.publisher()
				leaf := f.leaf("window", 2*time.Hour)
				f.refresh(p)
				rs := f.followingResponder(f.st, p)
				// Another replica committed the revocation but has not yet
				// stored the revoked response.
				if _, _, err := f.st.RevokeCertificate(f.ctx, leaf.Serial, f.clk.Now(), "keyCompromise", store.AuditEntry{
					Time: f.clk.Now(), Actor: "op", Action: "revoke", Target: leaf.Serial, Decision: "allow", RequestID: "r"}); err != nil {
					t.Fatal(err)
				}
				req := request(t, f.inter, leaf.Certificate.SerialNumber, crypto.SHA1)
				f.status(rs, req) // the stored (good) answer, as without a cache
				f.refresh(p)      // the publisher replaces the contradicted response
				if s := f.status(rs, req); s != StatusRevoked {
					t.Errorf("after the revoked response is stored (same instant): %s, want revoked", s)
				}
			})

			t.Run("the cache holds at most OCSPCache responses", func(t *testing.T) {
				cfg := shortConfig()
				cfg.OCSPCache = 3
				f := newFixture(t, b, cfg)
				p := f.publisher()
				var reqs [][]byte
				for i := range 6 {
					l := f.leaf("many-"+string(rune('a'+i)), 2*time.Hour)
					reqs = append(reqs, request(t, f.inter, l.Certificate.SerialNumber, crypto.SHA1))
				}
				f.refresh(p)
				rs := f.followingResponder(f.st, p)
				for _, r := range reqs {
					if s := f.status(rs, r); s != StatusGood {
						t.Fatalf("status %s", s)
					}
				}
				if n := rs.cache.Load().len(); n != 3 {
					t.Errorf("%d cached responses, want 3", n)
				}
			})
		})
	}
}

func TestOCSPCacheFillThatRacesAnInvalidationIsDropped(t *testing.T) {
	c := newOCSPCache(10, time.Second)
	now := time.Now()
	gen, ok := c.confirm(context.Background(), "ca", now, func(context.Context, string) (int64, error) { return 0, nil })
	if !ok {
		t.Fatal("confirm failed")
	}
	c.invalidate("ca", "1") // a revocation commits while the fill reads the store
	c.put("ca", "1", Response{Status: StatusGood, NextUpdate: now.Add(time.Hour)}, gen, now, time.Minute)
	if _, hit := c.get("ca", "1", now, time.Minute); hit {
		t.Error("a fill that started before the invalidation was cached")
	}
}

func TestOCSPCacheIsNotServedWhileTheCounterIsUnreadable(t *testing.T) {
	c := newOCSPCache(10, time.Second)
	now := time.Now()
	if _, ok := c.confirm(context.Background(), "ca", now, func(context.Context, string) (int64, error) { return 0, store.ErrUnavailable }); ok {
		t.Error("confirm succeeded without reading the counter")
	}
}
