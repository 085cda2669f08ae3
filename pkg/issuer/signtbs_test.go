package issuer

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// certificateWithAlgorithm encodes in one buffer what the tbsCertificate
// with its signature field replaced, then wrapped in a Certificate, encodes
// to, for certificates small and large (lengths of one to three bytes),
// and assembleCertificate too, each in one allocation.
func TestCertificateWithAlgorithmIsOneEncoding(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 20, maxDNSNames, 1200} {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), NotBefore: t0, NotAfter: t0.Add(time.Hour)}
		for i := range n {
			tmpl.DNSNames = append(tmpl.DNSNames, fmt.Sprintf("%s-%d.example.org", strings.Repeat("n", 40), i))
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rsaKey.Public(), rsaKey)
		if err != nil {
			t.Fatal(err)
		}
		tbs, algo, sig, err := splitCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		for _, newAlgo := range [][]byte{algo, {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70}} {
			// The two encodings it replaces: the tbsCertificate
			// rebuilt with newAlgo, then the Certificate.
			in := cryptobyte.String(tbs)
			var body, version, serial, old cryptobyte.String
			if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1Element(&version, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
				!body.ReadASN1Element(&serial, cbasn1.INTEGER) || !body.ReadASN1Element(&old, cbasn1.SEQUENCE) {
				t.Fatal("malformed")
			}
			var b cryptobyte.Builder
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(version)
				b.AddBytes(serial)
				b.AddBytes(newAlgo)
				b.AddBytes(body)
			})
			newTBS := b.BytesOrPanic()
			var c cryptobyte.Builder
			c.AddASN1(cbasn1.SEQUENCE, func(c *cryptobyte.Builder) {
				c.AddBytes(newTBS)
				c.AddBytes(newAlgo)
				c.AddASN1BitString(sig)
			})
			want := c.BytesOrPanic()

			got, err := certificateWithAlgorithm(tbs, newAlgo, sig)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%d names: certificateWithAlgorithm differs from the two encodings", n)
			}
			if allocs := testing.AllocsPerRun(10, func() { _, _ = certificateWithAlgorithm(tbs, newAlgo, sig) }); allocs != 1 {
				t.Errorf("%d names: certificateWithAlgorithm makes %v allocations, want 1", n, allocs)
			}
		}
		if got, err := assembleCertificate(tbs, algo, sig); err != nil || !bytes.Equal(got, der) {
			t.Fatalf("%d names: assembleCertificate does not give the certificate back (%v)", n, err)
		}
		if allocs := testing.AllocsPerRun(10, func() { _, _ = assembleCertificate(tbs, algo, sig) }); allocs != 1 {
			t.Errorf("%d names: assembleCertificate makes %v allocations, want 1", n, allocs)
		}
	}
}
