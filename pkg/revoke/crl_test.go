package revoke

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// selfSignedCA is a minimal CA certificate for unit tests of the encoder.
func selfSignedCA(t testing.TB, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Unit Test CA", Organization: []string{"acme"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign,
		SubjectKeyId: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomEntries(n int, at time.Time) []store.RevocationStatus {
	names := []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn"}
	out := make([]store.RevocationStatus, n)
	for i := range out {
		var b [16]byte
		_, _ = rand.Read(b[:])
		b[0] = b[0]&0x7f | 0x40
		out[i] = store.RevocationStatus{Serial: hex.EncodeToString(b[:]), Revoked: true, RevokedAt: at.Add(time.Duration(i) * time.Second), Reason: names[i%len(names)]}
	}
	return out
}

func TestCRLEncoderMatchesCryptoX509(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2031, 1, 2, 3, 4, 5, 999, time.UTC)
	odd := []store.RevocationStatus{
		{Serial: "1", RevokedAt: now, Reason: "keyCompromise"},                                                // one byte
		{Serial: "80", RevokedAt: now, Reason: "superseded"},                                                  // needs a 0x00 pad
		{Serial: "ff" + "00112233445566778899aabbccddeeff001122", RevokedAt: now, Reason: "unspecified"},      // 20 bytes, padded
		{Serial: "abc", RevokedAt: time.Date(2051, 1, 1, 0, 0, 0, 0, time.UTC), Reason: "privilegeWithdrawn"}, // odd length, GeneralizedTime
		{Serial: "7f", RevokedAt: now.In(time.FixedZone("x", 3600)), Reason: "futureReason"},                  // unknown stored reason: unspecified
	}
	cases := []struct {
		name    string
		key     crypto.Signer
		entries []store.RevocationStatus
	}{
		{"an empty CRL signed with P-256 matches", p256, nil},
		{"a CRL with odd serials, far dates and every reason matches (P-256)", p256, odd},
		{"a CRL with 1000 random entries matches (P-384)", p384, randomEntries(1000, now)},
		{"a CRL with entries matches (RSA)", rsaKey, randomEntries(50, now)},
		{"a CRL with entries matches (Ed25519)", edKey, randomEntries(50, now)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca := selfSignedCA(t, tc.key)
			in := crlInput{Issuer: ca, Number: 300, ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: tc.entries}
			der, err := signCRL(in, tc.key)
			if err != nil {
				t.Fatalf("signCRL: %v", err)
			}
			ours, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatalf("ParseRevocationList(ours): %v", err)
			}
			if err := ours.CheckSignatureFrom(ca); err != nil {
				t.Errorf("signature: %v", err)
			}
			tmpl := &x509.RevocationList{Number: big.NewInt(300), ThisUpdate: now, NextUpdate: now.Add(time.Hour)}
			for _, e := range tc.entries {
				s, _ := new(big.Int).SetString(e.Serial, 16)
				tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
					x509.RevocationListEntry{SerialNumber: s, RevocationTime: e.RevokedAt, ReasonCode: storedReasonCode(e.Reason)})
			}
			refDER, err := x509.CreateRevocationList(rand.Reader, tmpl, ca, tc.key)
			if err != nil {
				t.Fatalf("CreateRevocationList: %v", err)
			}
			ref, err := x509.ParseRevocationList(refDER)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours.RawTBSRevocationList, ref.RawTBSRevocationList) {
				t.Errorf("tbsCertList differs from crypto/x509's:\n ours %x\n ref  %x", head(ours.RawTBSRevocationList), head(ref.RawTBSRevocationList))
			}
			if ours.SignatureAlgorithm != ref.SignatureAlgorithm {
				t.Errorf("signature algorithm %v, crypto/x509 uses %v", ours.SignatureAlgorithm, ref.SignatureAlgorithm)
			}
		})
	}
}

func head(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

func TestCRLEncoderRefusesBadInput(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := selfSignedCA(t, key)
	now := time.Now()
	noCRLSign := *ca
	noCRLSign.KeyUsage = x509.KeyUsageCertSign
	cases := []struct {
		name string
		in   crlInput
	}{
		{"a serial that is not hex is refused", crlInput{Issuer: ca, Number: 1, ThisUpdate: now, NextUpdate: now, Entries: []store.RevocationStatus{{Serial: "xyz"}}}},
		{"a serial longer than 20 bytes is refused", crlInput{Issuer: ca, Number: 1, ThisUpdate: now, NextUpdate: now, Entries: []store.RevocationStatus{{Serial: fmt.Sprintf("%042x", 1)}}}},
		{"nextUpdate before thisUpdate is refused", crlInput{Issuer: ca, Number: 1, ThisUpdate: now, NextUpdate: now.Add(-time.Second)}},
		{"an issuer without cRLSign is refused", crlInput{Issuer: &noCRLSign, Number: 1, ThisUpdate: now, NextUpdate: now}},
		{"CRL number zero is refused", crlInput{Issuer: ca, Number: 0, ThisUpdate: now, NextUpdate: now}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := signCRL(tc.in, key); err == nil {
				t.Error("signCRL succeeded")
			}
		})
	}
}

// BenchmarkCRLBuildAndSign encodes and signs (software P-256) CRLs of 10k,
// 100k and 1M entries; the issue requires 1M in under 3 s.
func BenchmarkCRLBuildAndSign(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := selfSignedCA(b, key)
	now := time.Now()
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		entries := randomEntries(n, now)
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			var size int
			for b.Loop() {
				der, err := signCRL(crlInput{Issuer: ca, Number: 1, ThisUpdate: now, NextUpdate: now.Add(time.Hour), Entries: entries}, key)
				if err != nil {
					b.Fatal(err)
				}
				size = len(der)
			}
			b.ReportMetric(float64(size)/1e6, "MB")
		})
	}
}
