package jwtkeys_test

import (
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
)

// BenchmarkSign is one JWT-SVID: sign in the key store, self-verify, audit
// append (which dominates on a database).
func BenchmarkSign(b *testing.B) {
	for _, be := range []backend{sqliteBackend, softhsmBackend} {
		b.Run(be.name, func(b *testing.B) {
			f := newFixture(b, be, testConfig(hsm.ECDSAP256), time.Now())
			f.tick(b)
			r := jwtkeys.Request{SPIFFEID: "spiffe://example.org/svc", Audience: []string{"api"}, TTL: time.Minute}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.signer.Sign(ctxT(b), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
