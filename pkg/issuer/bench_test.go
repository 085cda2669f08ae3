package issuer

import (
	"context"
	"testing"
)

// BenchmarkIssue measures one full issuance (validate, lint-sign, zlint, CA
// sign, TBS check, commit) of a P-256 leaf, against each real backend, plus
// the lint alone and the whole path on in-memory fakes for comparison.
func BenchmarkIssue(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			ctx := context.Background()
			keys, st := be.open(b)
			d := realDeps(keys, st)
			cfg := integrationConfig()
			if _, err := Init(ctx, d, cfg); err != nil {
				b.Fatalf("Init: %v", err)
			}
			iss, err := Load(ctx, d, cfg)
			if err != nil {
				b.Fatalf("Load: %v", err)
			}
			pub := newP256(b).Public()
			for b.Loop() {
				if _, err := iss.Issue(ctx, Request{PublicKey: pub, SPIFFEID: "spiffe://example.org/bench", DNSNames: []string{"bench.internal"}}); err != nil {
					b.Fatalf("Issue: %v", err)
				}
			}
		})
	}
	b.Run("lint only", func(b *testing.B) {
		u := newUnitCA(b, Config{})
		got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(b).Public(), SPIFFEID: "spiffe://example.org/bench"})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := lintDER(got.DER); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("in-memory fakes", func(b *testing.B) {
		u := newUnitCA(b, Config{})
		pub := newP256(b).Public()
		for b.Loop() {
			if _, err := u.iss.Issue(context.Background(), Request{PublicKey: pub, SPIFFEID: "spiffe://example.org/bench"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
