package revoke

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync/atomic"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// refusingKeys hands out signers that fail with hsm.ErrUnsupported while
// refuse is set: a token that stopped signing with the responder key.
type refusingKeys struct {
	issuer.KeyStore
	refuse *atomic.Bool
}

type refusingSigner struct {
	crypto.Signer
	refuse *atomic.Bool
}

func (s refusingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.refuse.Load() {
		return nil, fmt.Errorf("hsm: sign: %w", hsm.ErrUnsupported)
	}
	return s.Signer.Sign(r, digest, opts)
}

func (k refusingKeys) wrap(key hsm.Key, err error) (hsm.Key, error) {
	if err == nil {
		key.Signer = refusingSigner{key.Signer, k.refuse}
	}
	return key, err
}

func (k refusingKeys) Generate(ctx context.Context, name string, kt hsm.KeyType) (hsm.Key, error) {
	return k.wrap(k.KeyStore.Generate(ctx, name, kt))
}

func (k refusingKeys) Find(ctx context.Context, uri string) (hsm.Key, error) {
	return k.wrap(k.KeyStore.Find(ctx, uri))
}

// KeyReady (for /readyz) reports an OCSP responder key that failed to sign,
// for the health window, without signing anything itself.
func TestResponderKeyReady(t *testing.T) {
	f := newFixture(t, sqliteBackend, shortConfig())
	refuse := &atomic.Bool{}
	health := &hsm.KeyHealth{Clock: f.clk}
	d := f.deps()
	d.Keys, d.KeyHealth = refusingKeys{KeyStore: f.keys, refuse: refuse}, health
	p, err := NewPublisher(d, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := NewResponder(d, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.leaf("a", 2*f.cfg.OCSPValidity)
	f.refresh(p)
	if err := rs.KeyReady(f.ctx); err != nil {
		t.Fatalf("after the responder signed: %v", err)
	}
	before := f.keys.n.Load()
	refuse.Store(true)
	// A never-issued serial is answered on the fly: a signature, refused.
	resp, _ := rs.Respond(f.ctx, request(t, f.inter, big.NewInt(424242), crypto.SHA1))
	if resp.Status == StatusUnknown {
		t.Fatalf("answered %s with the key refusing to sign", resp.Status)
	}
	if err := rs.KeyReady(f.ctx); !errors.Is(err, hsm.ErrUnsupported) {
		t.Fatalf("after a refused signature: %v, want ErrUnsupported", err)
	}
	if n := f.keys.n.Load() - before; n != 0 {
		t.Errorf("KeyReady made %d signatures", n)
	}
	refuse.Store(false)
	f.clk.Advance(hsm.DefaultKeyHealthWindow)
	if err := rs.KeyReady(f.ctx); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}
