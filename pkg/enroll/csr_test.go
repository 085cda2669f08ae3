package enroll

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/policy"
)

var (
	rsaOnce          sync.Once
	rsa1024, rsa2048 *rsa.PrivateKey
)

func rsaKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	rsaOnce.Do(func() {
		var err error
		if rsa1024, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			t.Fatal(err)
		}
		if rsa2048, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	})
	return rsa1024, rsa2048
}

func basicConstraints(t testing.TB, isCA bool, critical bool) pkix.Extension {
	v, err := asn1.Marshal(struct {
		IsCA bool `asn1:"optional"`
	}{isCA})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidBasicConstraints, Critical: critical, Value: v}
}

func TestParseCSR(t *testing.T) {
	weak, strong := rsaKeys(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	good := newCSR(t, csrOpts{})
	badSig := func() []byte {
		b, _ := pem.Decode(good)
		der := append([]byte(nil), b.Bytes...)
		der[len(der)-3] ^= 0xff // inside the signature
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}()
	tests := []struct {
		name string
		pem  []byte
		want string
		kt   policy.KeyType
	}{
		{"a P-256 CSR is accepted", good, "", policy.KeyECDSAP256},
		{"a P-384 CSR is accepted", newCSR(t, csrOpts{key: p384}), "", policy.KeyECDSAP384},
		{"an Ed25519 CSR is accepted", newCSR(t, csrOpts{key: ed}), "", policy.KeyEd25519},
		{"an RSA-2048 CSR is accepted", newCSR(t, csrOpts{key: strong}), "", policy.KeyRSA2048},
		{"a legacy NEW CERTIFICATE REQUEST block is accepted", []byte(strings.ReplaceAll(string(good), "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")), "", policy.KeyECDSAP256},
		{"a CSR with surrounding whitespace is accepted", append(append([]byte("\n\n"), good...), "\n  \n"...), "", policy.KeyECDSAP256},
		{"a CSR with a broken signature is refused with csr_bad_signature", badSig, ReasonCSRBadSignature, ""},
		{"a 1024-bit RSA key is refused with csr_weak_key", newCSR(t, csrOpts{key: weak}), ReasonCSRWeakKey, ""},
		{"a P-521 key is refused with csr_weak_key", newCSR(t, csrOpts{key: p521}), ReasonCSRWeakKey, ""},
		{"a SHA-1 signature is refused with csr_bad_signature", newCSR(t, csrOpts{key: strong, sigAlg: x509.SHA1WithRSA}), ReasonCSRBadSignature, ""},
		{"a CA:true request is refused with csr_forbidden_extension", newCSR(t, csrOpts{extra: []pkix.Extension{basicConstraints(t, true, true)}}), ReasonCSRForbiddenExtension, ""},
		{"a non-critical CA:true request is refused too", newCSR(t, csrOpts{extra: []pkix.Extension{basicConstraints(t, true, false)}}), ReasonCSRForbiddenExtension, ""},
		{"a CA:false basicConstraints is accepted", newCSR(t, csrOpts{extra: []pkix.Extension{basicConstraints(t, false, true)}}), "", policy.KeyECDSAP256},
		{"an unknown critical extension is refused", newCSR(t, csrOpts{extra: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}}), ReasonCSRForbiddenExtension, ""},
		{"an unknown non-critical extension is ignored", newCSR(t, csrOpts{extra: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Value: []byte{5, 0}}}}), "", policy.KeyECDSAP256},
		{"a name-constraints request is refused", newCSR(t, csrOpts{extra: []pkix.Extension{{Id: oidNameConstraints, Value: []byte{0x30, 0}}}}), ReasonCSRForbiddenExtension, ""},
		{"two PEM blocks are refused", append(append([]byte(nil), good...), good...), ReasonCSRMalformed, ""},
		{"text before the PEM block is refused", append([]byte("hello\n"), good...), ReasonCSRMalformed, ""},
		{"a certificate PEM block is refused", []byte(strings.ReplaceAll(string(good), "CERTIFICATE REQUEST", "CERTIFICATE")), ReasonCSRMalformed, ""},
		{"a PEM block with headers is refused", []byte(strings.Replace(string(good), "-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1)), ReasonCSRMalformed, ""},
		{"DER that is not a CSR is refused", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}), ReasonCSRMalformed, ""},
		{"empty input is refused", nil, ReasonCSRMalformed, ""},
		{"an oversized input is refused before decoding", make([]byte, MaxCSRBytes+1), ReasonCSRMalformed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := ParseCSR(tc.pem)
			if got := reasonOf(t, err); got != tc.want {
				t.Fatalf("ParseCSR reason = %q (%v), want %q", got, err, tc.want)
			}
			if err == nil {
				if kt, _ := KeyTypeOf(csr.PublicKey); kt != tc.kt {
					t.Errorf("key type %s, want %s", kt, tc.kt)
				}
			}
		})
	}
}

func TestKeyTypeOfRSASizesAndExponents(t *testing.T) {
	_, k := rsaKeys(t)
	pub := k.PublicKey
	pub.E = 3
	if _, err := KeyTypeOf(&pub); Reason(err) != ReasonCSRWeakKey {
		t.Errorf("exponent 3: %v, want csr_weak_key", err)
	}
	pub.E = 65536
	if _, err := KeyTypeOf(&pub); Reason(err) != ReasonCSRWeakKey {
		t.Errorf("even exponent: %v, want csr_weak_key", err)
	}
	if _, err := KeyTypeOf(struct{}{}); Reason(err) != ReasonCSRWeakKey {
		t.Errorf("unknown key: %v, want csr_weak_key", err)
	}
}

func BenchmarkParseCSR(b *testing.B) {
	csr := newCSR(b, csrOpts{dns: []string{"payments.prod.internal"}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCSR(csr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCSRRSA2048(b *testing.B) {
	_, k := rsaKeys(b)
	csr := newCSR(b, csrOpts{key: k})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCSR(csr); err != nil {
			b.Fatal(err)
		}
	}
}
