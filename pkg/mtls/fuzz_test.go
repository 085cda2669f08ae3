package mtls_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// FuzzParseBundle feeds bundle bodies (fetched from the network) to
// ParseBundle: it must return a bundle with authorities or an error, never
// panic.
func FuzzParseBundle(f *testing.F) {
	kit, err := testca.NewKit(testca.KitOptions{Now: t0})
	if err != nil {
		f.Fatal(err)
	}
	js, err := kit.BundleJSON()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(js)
	f.Add(testca.CertsPEM(kit.CA.Root))
	f.Add([]byte(`{"keys":[],"spiffe_refresh_hint":-1}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","use":"x509-svid","x5c":["AAAA"]}]}`))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	td := spiffeid.RequireTrustDomainFromString("example.org")
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := mtls.ParseBundle(td, data)
		if err == nil && len(b.X509Authorities()) == 0 {
			t.Fatal("a bundle without authorities was accepted")
		}
	})
}
