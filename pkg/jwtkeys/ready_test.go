package jwtkeys_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
)

// KeyReady (for /readyz) says whether a JWT-SVID could be signed, without
// signing: not before the first key exists, not while the key failed to
// sign within the health window.
func TestKeyReady(t *testing.T) {
	f := newFixture(t, sqliteBackend, testConfig(hsm.ECDSAP256), time.Now())
	ctx := ctxT(t)
	if err := f.signer.KeyReady(ctx); !errors.Is(err, jwtkeys.ErrNoActiveKey) {
		t.Fatalf("before the first key: %v, want ErrNoActiveKey", err)
	}
	f.tick(t)
	if err := f.signer.KeyReady(ctx); err != nil {
		t.Fatalf("with an active key: %v", err)
	}
	f.sign(t, "spiffe://example.org/a", "aud")
	// The key store goes away: the next signature fails, and readiness
	// says so without signing anything itself.
	if err := f.keys.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.signer.Sign(ctx, jwtkeys.Request{SPIFFEID: "spiffe://example.org/a", Audience: []string{"aud"}, TTL: time.Minute}); err == nil {
		t.Fatal("Sign succeeded with the key store closed")
	}
	if err := f.signer.KeyReady(ctx); !errors.Is(err, hsm.ErrClosed) {
		t.Fatalf("after a failed signature: %v, want ErrClosed", err)
	}
	f.clk.Advance(hsm.DefaultKeyHealthWindow)
	if err := f.signer.KeyReady(ctx); err != nil {
		t.Fatalf("after the window (the key is found again): %v", err)
	}
}
