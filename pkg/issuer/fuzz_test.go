package issuer

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzParseSPIFFEID checks that every accepted ID is one go-spiffe accepts too,
// in the trust domain, and free of the forms the issuer promises to refuse.
func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org/a", "spiffe://example.org/a/b.c-d_e", "spiffe://example.org",
		"spiffe://example.org/", "spiffe://example.org/a/../b", "spiffe://example.org/a%2f",
		"spiffe://u@example.org/a", "spiffe://example.org:1/a", "spiffe://example.org/a?q#f",
		"SPIFFE://example.org/a", "spiffe://example.org.evil/a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseSPIFFEID(s, "example.org")
		if err != nil {
			return
		}
		id, err := spiffeid.FromString(s)
		if err != nil {
			t.Fatalf("accepted %q, which go-spiffe refuses: %v", s, err)
		}
		if id.TrustDomain().Name() != "example.org" || id.Path() == "" || u.String() != s {
			t.Fatalf("accepted %q: trust domain %q path %q url %q", s, id.TrustDomain().Name(), id.Path(), u)
		}
		if strings.ContainsAny(s[len("spiffe://"):], "%?#@:") || strings.Contains(s, "//"+"/") {
			t.Fatalf("accepted %q with a forbidden character", s)
		}
	})
}

// FuzzParseChainPEM checks the import parser never panics and only returns
// 2..maxImportCerts certificates.
func FuzzParseChainPEM(f *testing.F) {
	root := newOfflineRoot(f, t0)
	f.Add(string(root.sign(f, mustCSR(f), t0, nil)))
	f.Add("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		certs, err := parseChainPEM([]byte(s))
		if err == nil && (len(certs) < 2 || len(certs) > maxImportCerts) {
			t.Fatalf("returned %d certificates", len(certs))
		}
	})
}

func mustCSR(tb testing.TB) []byte {
	d, _, _ := fakeDeps()
	csr, _, err := NewIntermediateCSR(tb.Context(), d, testConfig())
	if err != nil {
		tb.Fatal(err)
	}
	return csr
}
