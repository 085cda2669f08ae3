package hsm_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"path/filepath"
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// BenchmarkSign measures one signature over a SHA-256 digest through the
// store's crypto.Signer: SoftHSM through crypto11 (including this package's
// reconnect wrapper) and the software store.
func BenchmarkSign(b *testing.B) {
	d := sha256.Sum256([]byte("benchmark"))
	software := func(b *testing.B) hsm.KeyStore {
		s, err := hsm.OpenSoftware(filepath.Join(b.TempDir(), "keys"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	softhsm := func(b *testing.B) hsm.KeyStore { return testkit.SoftHSMKeyStore(b) }
	cases := []struct {
		name string
		open func(*testing.B) hsm.KeyStore
		kt   hsm.KeyType
	}{
		{"softhsm/ecdsa-p256", softhsm, hsm.ECDSAP256},
		{"softhsm/rsa-3072", softhsm, hsm.RSA3072},
		{"software/ecdsa-p256", software, hsm.ECDSAP256},
		{"software/rsa-3072", software, hsm.RSA3072},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			key, err := c.open(b).Generate(context.Background(), "bench", c.kt)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := key.Signer.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			key, err := c.open(b).Generate(context.Background(), "bench", c.kt)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := key.Signer.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
