package mtls_test

import (
	"context"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// BenchmarkVerify is the per-handshake cost of this package's checks (chain
// verification, SPIFFE ID, authorizer; revocation answered from cache).
func BenchmarkVerify(b *testing.B) {
	r := newRevocationCA(b)
	cred, err := r.ca.Issue(testca.Leaf{SPIFFEID: "spiffe://example.org/svc"})
	if err != nil {
		b.Fatal(err)
	}
	chk, _ := mtls.NewRevocationChecker(mtls.RevocationConfig{CRL: true, Clock: r.clk})
	v, err := mtls.NewVerifier(mtls.VerifierConfig{Bundles: bundleOf(r.ca), Clock: r.clk, Revocation: chk,
		Authorize: mtls.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/svc"))})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		if _, err := v.Verify(ctx, cred.Chain, mtls.PeerIsClient); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake is a full loopback mTLS handshake (TLS 1.3, P-256)
// with both sides verifying through this package.
func BenchmarkHandshake(b *testing.B) {
	t := b
	f := newFixture(t)
	srv := startServer(t, mustServer(t, f.config(t, testca.Good, &recorder{})))
	cfg := mustClient(t, f.config(t, testca.Good, &recorder{}))
	for b.Loop() {
		if err := dial(t, srv.addr, cfg); err != nil {
			b.Fatal(err)
		}
		if err := srv.result(t); err != nil {
			b.Fatal(err)
		}
	}
}
