package revoke

import (
	"context"
	"crypto"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// BenchmarkOCSPRespondFromStore measures answering a request whose response
// is pre-signed: parse, CertID lookup, one primary-key read. It fails if the
// hot path signs.
func BenchmarkOCSPRespondFromStore(b *testing.B) {
	for _, be := range []backend{sqliteBackend, postgresBackend} {
		b.Run(be.name, func(b *testing.B) {
			f := newFixture(b, be, shortConfig())
			leaf := f.leaf("bench", 2*time.Hour)
			f.refresh(f.publisher())
			rs := f.responder()
			req := request(b, f.inter, leaf.Certificate.SerialNumber, crypto.SHA1)
			ctx := context.Background()
			before := f.keys.n.Load()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := rs.Respond(ctx, req)
				if err != nil || resp.Status != StatusGood {
					b.Fatalf("Respond: %s, %v", resp.Status, err)
				}
			}
			if n := f.keys.n.Load() - before; n != 0 {
				b.Fatalf("%d signatures on the hot path", n)
			}
		})
	}
}

// BenchmarkPublisherTickIdle measures a tick with nothing due: the cost
// every replica pays every Tick.
func BenchmarkPublisherTickIdle(b *testing.B) {
	for _, be := range []backend{sqliteBackend, postgresBackend} {
		b.Run(be.name, func(b *testing.B) {
			f := newFixture(b, be, shortConfig())
			for range 20 {
				f.leaf("x", 2*time.Hour)
			}
			p := f.publisher()
			f.refresh(p)
			for b.Loop() {
				if rep, err := p.RefreshOnce(f.ctx); err != nil || len(rep.CRLs) != 0 || rep.OCSPSigned != 0 {
					b.Fatalf("idle tick did work: %+v, %v", rep, err)
				}
			}
		})
	}
}

// BenchmarkOCSPRespondFromCache is BenchmarkOCSPRespondFromStore with the
// responder following a publisher: parse, CertID lookup, one map lookup.
func BenchmarkOCSPRespondFromCache(b *testing.B) {
	f := newFixture(b, sqliteBackend, shortConfig())
	leaf := f.leaf("bench", 2*time.Hour)
	p := f.publisher()
	f.refresh(p)
	rs := f.followingResponder(f.st, p)
	req := request(b, f.inter, leaf.Certificate.SerialNumber, crypto.SHA1)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := rs.Respond(ctx, req)
			if err != nil || resp.Status != StatusGood {
				b.Errorf("Respond: %s, %v", resp.Status, err)
				return
			}
		}
	})
}

// BenchmarkOCSPSign measures signing one pre-signed (SHA-1 CertID) response
// with the fixture's delegated responder (software ECDSA P-256): what every
// enrollment costs right after it is answered.
func BenchmarkOCSPSign(b *testing.B) {
	f := newFixture(b, sqliteBackend, shortConfig())
	leaf := f.leaf("bench", 2*time.Hour)
	p := f.publisher()
	f.refresh(p)
	c, err := p.cas.get(f.ctx, f.interID)
	if err != nil || c == nil {
		b.Fatalf("cas.get: %v, %v", c, err)
	}
	r, err := p.signer.responder(f.ctx, c)
	if err != nil {
		b.Fatalf("responder: %v", err)
	}
	serial := leaf.Certificate.SerialNumber
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.signer.sign(r, c, serial, ocsp.Good, time.Time{}, 0, crypto.SHA1, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}
