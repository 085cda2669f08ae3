package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestIssuedLeafHasTheSVIDProfile(t *testing.T) {
	u := newUnitCA(t, Config{})
	key := newP256(t)
	got, err := u.iss.Issue(context.Background(), Request{
		PublicKey:     key.Public(),
		SPIFFEID:      "spiffe://example.org/prod/payments",
		DNSNames:      []string{"Payments.prod.internal"},
		TTL:           30 * time.Minute,
		Provenance:    json.RawMessage(`{"issuer":"github","sub":"repo:acme/payments"}`),
		PolicyRule:    "payments-main",
		PolicyVersion: "v1",
		Actor:         "repo:acme/payments",
		RequestID:     "req-1",
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	c := got.Certificate
	if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://example.org/prod/payments" {
		t.Errorf("URIs = %v, want exactly the SPIFFE ID", c.URIs)
	}
	if len(c.DNSNames) != 1 || c.DNSNames[0] != "payments.prod.internal" {
		t.Errorf("DNSNames = %v, want the lowercased name", c.DNSNames)
	}
	if len(c.Subject.Names) != 0 {
		t.Errorf("subject = %v, want empty", c.Subject)
	}
	sanCritical := false
	for _, e := range c.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
			sanCritical = e.Critical
		}
	}
	if !sanCritical {
		t.Error("SAN extension is not critical although the subject is empty")
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature only for an ECDSA key", c.KeyUsage)
	}
	if len(c.ExtKeyUsage) != 2 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || c.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v", c.ExtKeyUsage)
	}
	if !c.BasicConstraintsValid || c.IsCA {
		t.Errorf("basic constraints valid=%v CA=%v, want present and not a CA", c.BasicConstraintsValid, c.IsCA)
	}
	wantSKI, _ := subjectKeyID(key.Public())
	if hex.EncodeToString(c.SubjectKeyId) != hex.EncodeToString(wantSKI) || len(c.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId = %x, want %x", c.SubjectKeyId, wantSKI)
	}
	if hex.EncodeToString(c.AuthorityKeyId) != hex.EncodeToString(u.iss.cert.SubjectKeyId) {
		t.Errorf("AuthorityKeyId = %x, want the intermediate's SKI %x", c.AuthorityKeyId, u.iss.cert.SubjectKeyId)
	}
	wantCRL := "http://ca.example.org:8080/crl/" + got.IssuerID + ".crl"
	if len(c.CRLDistributionPoints) != 1 || c.CRLDistributionPoints[0] != wantCRL {
		t.Errorf("CRL DP = %v, want %s", c.CRLDistributionPoints, wantCRL)
	}
	if len(c.OCSPServer) != 1 || c.OCSPServer[0] != "http://ca.example.org:8080/ocsp" {
		t.Errorf("OCSP = %v", c.OCSPServer)
	}
	if !c.NotBefore.Equal(t0.Add(-DefaultBackdate)) || !c.NotAfter.Equal(t0.Add(30*time.Minute)) || !got.NotAfter.Equal(c.NotAfter) {
		t.Errorf("validity %v..%v (Issued.NotAfter %v), want backdated by DefaultBackdate (5m) and 30m TTL", c.NotBefore, c.NotAfter, got.NotAfter)
	}
	if got.IssuerID != u.iss.ActiveIssuerID() || got.Serial != c.SerialNumber.Text(16) {
		t.Errorf("IssuerID %q Serial %q", got.IssuerID, got.Serial)
	}
	verifyLeaf(t, u.roots(t), c, got.Chain, t0)

	rec := u.store.certs[got.Serial]
	spki := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	switch {
	case string(rec.DER) != string(got.DER):
		t.Error("stored DER differs from the returned certificate")
	case rec.PublicKeySHA256 != hex.EncodeToString(spki[:]):
		t.Errorf("PublicKeySHA256 = %s", rec.PublicKeySHA256)
	case rec.SPIFFEID != "spiffe://example.org/prod/payments" || rec.PolicyRule != "payments-main" || rec.PolicyVersion != "v1":
		t.Errorf("record fields = %+v", rec)
	case string(rec.Provenance) != `{"issuer":"github","sub":"repo:acme/payments"}`:
		t.Errorf("provenance = %s", rec.Provenance)
	case rec.Status != store.CertActive || rec.IssuerID != got.IssuerID:
		t.Errorf("status %q issuer %q", rec.Status, rec.IssuerID)
	}
	last := u.store.audit[len(u.store.audit)-1]
	if last.Action != "issue" || last.Target != got.Serial || last.Decision != "allow" || last.RequestID != "req-1" || last.Actor != "repo:acme/payments" {
		t.Errorf("audit entry = %+v", last)
	}

	logs := u.logs.String()
	for _, want := range []string{`"serial":"` + got.Serial, `"spiffe_id":"spiffe://example.org/prod/payments"`, `"policy_rule":"payments-main"`, `"policy_version":"v1"`, `"request_id":"req-1"`, `"actor":"repo:acme/payments"`, `"decision":"allow"`, `"issuer":"` + got.IssuerID} {
		if !strings.Contains(logs, want) {
			t.Errorf("issuance log lacks %s: %s", want, logs)
		}
	}
}

func TestLeafKeyTypes(t *testing.T) {
	u := newUnitCA(t, Config{})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name   string
		pub    any
		wantKU x509.KeyUsage
	}{
		{"an RSA key also gets keyEncipherment", &rsaKey.PublicKey, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
		{"an Ed25519 key gets digitalSignature only", edPub, x509.KeyUsageDigitalSignature},
		{"a P-384 key gets digitalSignature only", &p384.PublicKey, x509.KeyUsageDigitalSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := u.iss.Issue(context.Background(), Request{PublicKey: tt.pub, SPIFFEID: "spiffe://example.org/k"})
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if got.Certificate.KeyUsage != tt.wantKU {
				t.Errorf("KeyUsage = %v, want %v", got.Certificate.KeyUsage, tt.wantKU)
			}
		})
	}
}

func TestInvalidRequestsAreRefusedBeforeSigning(t *testing.T) {
	u := newUnitCA(t, Config{})
	pub := newP256(t).Public()
	smallRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	ok := Request{PublicKey: pub, SPIFFEID: "spiffe://example.org/ok"}
	with := func(f func(*Request)) Request { r := ok; f(&r); return r }
	tests := []struct {
		name string
		req  Request
	}{
		{"a missing public key is refused", with(func(r *Request) { r.PublicKey = nil })},
		{"an RSA key under 2048 bits is refused", with(func(r *Request) { r.PublicKey = &smallRSA.PublicKey })},
		{"a P-224 key is refused", with(func(r *Request) { r.PublicKey = &p224.PublicKey })},
		{"a private key in place of a public key is refused", with(func(r *Request) { r.PublicKey = smallRSA })},
		{"a missing SPIFFE ID is refused", with(func(r *Request) { r.SPIFFEID = "" })},
		{"an https URI is refused", with(func(r *Request) { r.SPIFFEID = "https://example.org/x" })},
		{"an upper-case scheme is refused", with(func(r *Request) { r.SPIFFEID = "SPIFFE://example.org/x" })},
		{"another trust domain is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://evil.org/x" })},
		{"a trust domain suffix trick is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org.evil.org/x" })},
		{"an upper-case trust domain is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://Example.org/x" })},
		{"the bare trust domain is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org" })},
		{"a lone slash path is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/" })},
		{"a trailing slash is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/a/" })},
		{"an empty segment is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/a//b" })},
		{"a dot segment is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/a/./b" })},
		{"a dot-dot segment is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/a/../b" })},
		{"percent-encoding is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/a%2Fb" })},
		{"a query is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/a?b=c" })},
		{"a fragment is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/a#b" })},
		{"userinfo is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://user@example.org/a" })},
		{"a port is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org:443/a" })},
		{"a space in the path is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/a b" })},
		{"an over-long SPIFFE ID is refused", with(func(r *Request) { r.SPIFFEID = "spiffe://example.org/" + strings.Repeat("a", 2100) })},
		{"a wildcard DNS name is refused", with(func(r *Request) { r.DNSNames = []string{"*.example.org"} })},
		{"an empty DNS name is refused", with(func(r *Request) { r.DNSNames = []string{""} })},
		{"a DNS name with an empty label is refused", with(func(r *Request) { r.DNSNames = []string{"a..b"} })},
		{"a DNS name with a trailing dot is refused", with(func(r *Request) { r.DNSNames = []string{"a.b."} })},
		{"a DNS name with an underscore is refused", with(func(r *Request) { r.DNSNames = []string{"a_b.example.org"} })},
		{"a DNS label starting with a hyphen is refused", with(func(r *Request) { r.DNSNames = []string{"-a.example.org"} })},
		{"a DNS label over 63 bytes is refused", with(func(r *Request) { r.DNSNames = []string{strings.Repeat("a", 64) + ".org"} })},
		{"an IP literal as DNS name is refused", with(func(r *Request) { r.DNSNames = []string{"10.0.0.1"} })},
		{"duplicate DNS names are refused", with(func(r *Request) { r.DNSNames = []string{"a.org", "A.org"} })},
		{"a non-ASCII DNS name is refused", with(func(r *Request) { r.DNSNames = []string{"bücher.example"} })},
		{"a malformed IP address is refused", with(func(r *Request) { r.IPAddresses = []net.IP{{1, 2, 3}} })},
		{"a negative TTL is refused", with(func(r *Request) { r.TTL = -time.Second })},
		{"provenance that is not JSON is refused", with(func(r *Request) { r.Provenance = json.RawMessage("{nope") })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := u.keys.signs.Load()
			got, err := u.iss.Issue(context.Background(), tt.req)
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
			if got != nil {
				t.Error("a refused request returned a certificate")
			}
			if n := u.keys.signs.Load() - before; n != 0 {
				t.Errorf("the CA key signed %d times for a refused request", n)
			}
		})
	}
	if n := u.store.certCount(); n != 0 {
		t.Errorf("%d certificates recorded for refused requests", n)
	}
}

func TestTTL(t *testing.T) {
	u := newUnitCA(t, Config{TrustDomain: "example.org", PublicURL: "http://ca", DefaultTTL: 2 * time.Hour, MaxTTL: 8 * time.Hour})
	tests := []struct {
		name string
		ttl  time.Duration
		want time.Duration
	}{
		{"no TTL gets the default TTL", 0, 2 * time.Hour},
		{"a short TTL is kept", 5 * time.Minute, 5 * time.Minute},
		{"a TTL of exactly MaxTTL is kept", 8 * time.Hour, 8 * time.Hour},
		{"a TTL over MaxTTL is capped to MaxTTL", 72 * time.Hour, 8 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/ttl", TTL: tt.ttl})
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if want := t0.Add(tt.want); !got.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %v, want %v", got.NotAfter, want)
			}
		})
	}
}

func TestNotAfterIsCappedByTheIssuersNotAfter(t *testing.T) {
	u := newUnitCA(t, Config{})
	interNotAfter := u.iss.cert.NotAfter
	u.clock.Set(interNotAfter.Add(-10 * time.Minute))
	got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/late", TTL: time.Hour})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if !got.NotAfter.Equal(interNotAfter) {
		t.Errorf("NotAfter = %v, want the intermediate's %v", got.NotAfter, interNotAfter)
	}
	verifyLeaf(t, u.roots(t), got.Certificate, got.Chain, u.clock.Now())

	u.clock.Set(interNotAfter.Add(time.Second))
	got, err = u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/late"})
	if !errors.Is(err, ErrIssuerExpired) || got != nil {
		t.Errorf("after the intermediate expired: got %v, err %v; want ErrIssuerExpired", got, err)
	}
}

func TestSerialNumbers(t *testing.T) {
	u := newUnitCA(t, Config{})
	seen := map[string]bool{}
	for range 50 {
		got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/s"})
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		s := got.Certificate.SerialNumber
		der, _ := asn1.Marshal(s)
		switch {
		case s.Sign() <= 0:
			t.Fatalf("serial %v is not positive", s)
		case s.BitLen() != 127:
			t.Fatalf("serial %x has %d bits, want 127 (16 bytes, top bit clear, next bit set)", s, s.BitLen())
		case len(der)-2 > 20:
			t.Fatalf("serial encodes to %d content bytes", len(der)-2)
		case got.Serial != strings.ToLower(got.Serial) || len(got.Serial) != 32 || got.Serial != hex.EncodeToString(s.Bytes()):
			t.Fatalf("stored serial %q is not the 32-digit lowercase hex of the serial bytes", got.Serial)
		case seen[got.Serial]:
			t.Fatalf("serial %s repeated", got.Serial)
		}
		seen[got.Serial] = true
	}
}

func TestNewSerialKeepsTheRandomBits(t *testing.T) {
	zeros := strings.NewReader(strings.Repeat("\x00", 16))
	s, err := newSerial(zeros)
	if err != nil {
		t.Fatal(err)
	}
	if want := new(big.Int).Lsh(big.NewInt(1), 126); s.Cmp(want) != 0 {
		t.Errorf("all-zero randomness gave %x, want 0x40 followed by zeros", s)
	}
	ones := strings.NewReader(strings.Repeat("\xff", 16))
	s, _ = newSerial(ones)
	if want := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 127), big.NewInt(1)); s.Cmp(want) != 0 {
		t.Errorf("all-ones randomness gave %x, want 0x7fff...", s)
	}
	if _, err := newSerial(strings.NewReader("short")); err == nil {
		t.Error("a short read did not fail")
	}
}

// A time-ordered serial (the embedded store's) is the issuance time in
// milliseconds, then 80 random bits, with the top two bits 01 (issue 20:
// serials that grow with time append to SQLite's indexes instead of
// dirtying a random page each).
func TestNewTimeOrderedSerialIsTheTimeThenTheRandomBits(t *testing.T) {
	at := time.Date(2026, 12, 5, 19, 0, 0, 123_000_000, time.UTC)
	zeros := strings.NewReader(strings.Repeat("\x00", 10))
	s, err := newTimeOrderedSerial(zeros, at)
	if err != nil {
		t.Fatal(err)
	}
	ms := new(big.Int).SetInt64(at.UnixMilli())
	want := new(big.Int).Or(new(big.Int).Lsh(big.NewInt(1), 126), new(big.Int).Lsh(ms, 80))
	if s.Cmp(want) != 0 {
		t.Errorf("all-zero randomness at %v gave %x, want %x", at, s, want)
	}
	ones := strings.NewReader(strings.Repeat("\xff", 10))
	s, _ = newTimeOrderedSerial(ones, at)
	if low := new(big.Int).And(s, new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 80), big.NewInt(1))); low.BitLen() != 80 || low.Cmp(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 80), big.NewInt(1))) != 0 {
		t.Errorf("all-ones randomness gave %x: the low 80 bits are not the random bytes", s)
	}
	if _, err := newTimeOrderedSerial(strings.NewReader("short"), at); err == nil {
		t.Error("a short read did not fail")
	}
	// Later issuance, larger serial, whatever the random bits; and the
	// stored hex sorts the same way (fixed 32 digits).
	a, _ := newTimeOrderedSerial(strings.NewReader(strings.Repeat("\xff", 10)), at)
	b, _ := newTimeOrderedSerial(strings.NewReader(strings.Repeat("\x00", 10)), at.Add(time.Millisecond))
	if a.Cmp(b) >= 0 || serialHex(a) >= serialHex(b) || len(serialHex(a)) != 32 || len(serialHex(b)) != 32 {
		t.Errorf("serials %s (earlier) and %s (a millisecond later) are not in time order", serialHex(a), serialHex(b))
	}
	// The clock before 1970 or past the 46 bits: still 16 bytes, 01 on top.
	for _, odd := range []time.Time{time.Unix(-5, 0), time.UnixMilli(1 << 47)} {
		s, _ := newTimeOrderedSerial(strings.NewReader(strings.Repeat("\x00", 10)), odd)
		if s.BitLen() != 127 {
			t.Errorf("at %v the serial %x has %d bits, want 127", odd, s, s.BitLen())
		}
	}
}

func TestLintFailureSignsNothing(t *testing.T) {
	u := newUnitCA(t, Config{})
	// A CRL distribution point that is not a URI fails RFC 5280 lints.
	u.iss.crlURL = "not a uri"
	before := u.keys.signs.Load()
	got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/lint"})
	if !errors.Is(err, ErrLint) {
		t.Fatalf("err = %v, want ErrLint", err)
	}
	t.Log(err)
	if got != nil {
		t.Error("a certificate was returned despite the lint failure")
	}
	if n := u.keys.signs.Load() - before; n != 0 {
		t.Errorf("the CA key signed %d times after a lint failure", n)
	}
	if u.store.certCount() != 0 || u.store.records != 0 {
		t.Error("something was recorded after a lint failure")
	}
}

func TestALeafThatIsACAFailsLint(t *testing.T) {
	u := newUnitCA(t, Config{})
	// No request makes such a leaf: the template is edited between the
	// steps of Issue (issueOnce's, with issueTemplate after leafTemplate).
	v, err := u.iss.validate(Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/lint"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := u.iss.leafTemplate(v, big.NewInt(1))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	_, err = u.iss.issueTemplate(context.Background(), v, t0, tmpl)
	if !errors.Is(err, ErrLint) {
		t.Fatalf("err = %v, want ErrLint for keyCertSign without CA", err)
	}
	t.Log(err)
}

// The CA key signs the linted tbsCertificate itself: a faulty signature is
// refused before anything is recorded, a lint copy whose signature
// algorithm is not the CA key's is refused before the CA key signs, and a
// certificate that does not name the real issuer is discarded.
func TestSignedTBSMustEqualLintedTBS(t *testing.T) {
	t.Run("a signature that does not verify is refused", func(t *testing.T) {
		u := newUnitCA(t, Config{})
		u.iss.signer = flippingSigner{u.iss.signer}
		got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x"})
		if err == nil || !strings.Contains(err.Error(), "does not verify") || got != nil {
			t.Fatalf("got %v, err %v; want a signature that does not verify and no certificate", got, err)
		}
		if u.store.certCount() != 0 {
			t.Error("a certificate with a faulty signature was recorded")
		}
	})
	t.Run("a lint copy with another signature algorithm is refused unsigned", func(t *testing.T) {
		u := newUnitCA(t, Config{})
		rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(100, 0)}
		other, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rsaKey.Public(), rsaKey)
		if err != nil {
			t.Fatal(err)
		}
		before := u.keys.signs.Load()
		if _, err := u.iss.signLinted(context.Background(), other); !errors.Is(err, errSignedNotLinted) {
			t.Fatalf("err = %v, want errSignedNotLinted", err)
		}
		if n := u.keys.signs.Load() - before; n != 0 {
			t.Errorf("the CA key signed %d times", n)
		}
	})
	t.Run("a lint issuer that drifted from the real one gives no certificate", func(t *testing.T) {
		u := newUnitCA(t, Config{})
		// Another subject key ID, so another authority key ID in the
		// signed certificate: it would chain to nothing.
		ski := bytes.Clone(u.iss.lint.parent.SubjectKeyId)
		ski[0] ^= 0xff
		u.iss.lint.parent.SubjectKeyId = ski
		got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x"})
		if !errors.Is(err, errSignedNotLinted) || got != nil {
			t.Fatalf("got %v, err %v; want errSignedNotLinted and no certificate", got, err)
		}
		if u.store.certCount() != 0 {
			t.Error("a certificate naming another issuer was recorded")
		}
	})
	t.Run("the issued tbsCertificate is crypto/x509's encoding of the template", func(t *testing.T) {
		u := newUnitCA(t, Config{})
		// What x509.CreateCertificate makes of the same template with a
		// key of the issuer's type: the tbsCertificate must be the same
		// bytes (the captured encoding with its signature field replaced).
		throwaway := newP256(t)
		parent := &x509.Certificate{RawSubject: u.iss.cert.RawSubject, SubjectKeyId: u.iss.cert.SubjectKeyId, PublicKey: throwaway.Public()}
		pub := newP256(t).Public()
		v, err := u.iss.validate(Request{PublicKey: pub, SPIFFEID: "spiffe://example.org/x", DNSNames: []string{"x.example.org"}}, t0)
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := u.iss.leafTemplate(v, big.NewInt(42))
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, throwaway)
		if err != nil {
			t.Fatal(err)
		}
		wantTBS, _, _, _ := splitCertificate(der)
		got, err := u.iss.issueTemplate(context.Background(), v, t0, tmpl)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Certificate.RawTBSCertificate, wantTBS) {
			t.Error("the signed tbsCertificate is not crypto/x509's encoding of the template")
		}
		if err := got.Certificate.CheckSignatureFrom(u.iss.cert); err != nil {
			t.Errorf("the certificate does not verify under the issuer: %v", err)
		}
	})
}

// flippingSigner corrupts every signature it makes, as a faulty HSM would.
type flippingSigner struct{ crypto.Signer }

func (f flippingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := f.Signer.Sign(r, digest, opts)
	if err == nil {
		sig[len(sig)-2] ^= 0x01
	}
	return sig, err
}

func TestStoreFailureReturnsNoCertificate(t *testing.T) {
	u := newUnitCA(t, Config{})
	u.store.recordErr = fmt.Errorf("memStore: connection reset: %w", store.ErrUnavailable)
	got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x"})
	if got != nil {
		t.Fatal("a certificate was returned although its record was not committed")
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want it to wrap store.ErrUnavailable", err)
	}
	if u.store.records != 1 {
		t.Errorf("RecordIssuance called %d times, want 1 (no retry on unavailability)", u.store.records)
	}
	var nr *NotRecordedError
	if !errors.As(err, &nr) || nr.Serial == "" {
		t.Errorf("err = %v, want a *NotRecordedError naming the discarded serial", err)
	}
	if !strings.Contains(u.logs.String(), `"decision":"error"`) {
		t.Errorf("the failure was not logged: %s", u.logs.String())
	}
}

func TestSignerFailurePropagates(t *testing.T) {
	u := newUnitCA(t, Config{})
	u.keys.signErr = fmt.Errorf("token removed: %w", hsm.ErrUnavailable)
	got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x"})
	if got != nil || !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("got %v, err %v; want no certificate and hsm.ErrUnavailable", got, err)
	}
	if u.store.records != 0 {
		t.Error("a record was written although signing failed")
	}
}

func TestSerialCollisionIsRetriedWithANewSerial(t *testing.T) {
	tests := []struct {
		name      string
		conflicts int
		wantErr   bool
		wantCalls int
	}{
		{"one collision is retried and succeeds", 1, false, 2},
		{"two collisions are retried and succeed", 2, false, 3},
		{"collisions on every attempt give up with ErrConflict", 5, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUnitCA(t, Config{})
			u.store.conflictsLeft = tt.conflicts
			got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x"})
			if u.store.records != tt.wantCalls {
				t.Errorf("RecordIssuance called %d times, want %d", u.store.records, tt.wantCalls)
			}
			if tt.wantErr {
				if got != nil || !errors.Is(err, store.ErrConflict) {
					t.Fatalf("got %v, err %v; want no certificate and ErrConflict", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if _, ok := u.store.certs[got.Serial]; !ok {
				t.Error("the returned serial is not the recorded one")
			}
		})
	}
}

func TestRenewalIsAuditedAsRenew(t *testing.T) {
	u := newUnitCA(t, Config{})
	first, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/x", RenewedFrom: first.Serial})
	if err != nil {
		t.Fatal(err)
	}
	if rec := u.store.certs[second.Serial]; rec.RenewedFrom != first.Serial {
		t.Errorf("RenewedFrom = %q", rec.RenewedFrom)
	}
	if acts := u.store.auditActions(); acts[len(acts)-1] != "renew" || acts[len(acts)-2] != "issue" {
		t.Errorf("audit actions = %v", acts)
	}
}

func TestIPAddressesForTheAPIServerCertificate(t *testing.T) {
	u := newUnitCA(t, Config{})
	got, err := u.iss.Issue(context.Background(), Request{
		PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/ca/server",
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		CAServer: true,
	})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if ips := got.Certificate.IPAddresses; len(ips) != 2 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) || !ips[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses = %v", ips)
	}
}

// The audit details of an issuance encode to the bytes of the map they were
// built as before (encoding/json sorts a map's keys).
func TestIssuanceDetailsEncodeAsTheMap(t *testing.T) {
	for _, d := range []issuanceDetails{
		{},
		{Issuer: "int-1", SPIFFEID: "spiffe://example.org/a", DNSNames: []string{"a.example.org", "b.example.org"},
			NotAfter: t0.Add(time.Hour), PolicyRule: "rule-1", RenewedFrom: "4a5b"},
		{Issuer: "<&>\u2028", SPIFFEID: "spiffe://example.org/\"q\"\\", DNSNames: []string{}, NotAfter: time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600)),
			PolicyRule: "é\x01", RenewedFrom: ""},
	} {
		got, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(map[string]any{
			"issuer":       d.Issuer,
			"spiffe_id":    d.SPIFFEID,
			"dns_names":    d.DNSNames,
			"not_after":    d.NotAfter,
			"policy_rule":  d.PolicyRule,
			"renewed_from": d.RenewedFrom,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("details encode to\n%s\nwant\n%s", got, want)
		}
	}
}

// The issuance log record is the one the key-value InfoContext call made:
// same message, level, attributes and values, in the same order.
func TestIssuanceLogRecord(t *testing.T) {
	u := newUnitCA(t, Config{})
	r := Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/log", PolicyRule: "rule <1>", PolicyVersion: "v7",
		RequestID: "req-9", Actor: "repo:acme/x", RenewedFrom: "abc"}
	got, err := u.iss.Issue(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	var line []byte
	for _, l := range bytes.Split(u.logs.Bytes(), []byte("\n")) {
		if bytes.Contains(l, []byte(`"msg":"certificate issued"`)) {
			line = l
		}
	}
	var want bytes.Buffer
	slog.New(slog.NewJSONHandler(&want, nil)).InfoContext(context.Background(), "certificate issued",
		"serial", got.Serial, "issuer", got.IssuerID, "spiffe_id", r.SPIFFEID, "policy_rule", r.PolicyRule,
		"policy_version", r.PolicyVersion, "request_id", r.RequestID, "actor", r.Actor, "action", "renew",
		"not_after", got.NotAfter, "decision", "allow")
	// Without the time, the rest of the line is the same bytes.
	_, gotRest, ok1 := bytes.Cut(line, []byte(`,"level"`))
	_, wantRest, ok2 := bytes.Cut(bytes.TrimSpace(want.Bytes()), []byte(`,"level"`))
	if !ok1 || !ok2 || !bytes.Equal(gotRest, wantRest) {
		t.Errorf("issuance log\n%s\nwant\n%s", line, want.Bytes())
	}
}

// Config.TimeOrderedSerials (the embedded store) puts the issuer clock's
// milliseconds in front of each leaf serial; without it serials are random.
func TestTimeOrderedSerialsCarryTheIssuanceTime(t *testing.T) {
	cfg := testConfig()
	cfg.TimeOrderedSerials = true
	u := newUnitCA(t, cfg)
	got, err := u.iss.Issue(context.Background(), Request{PublicKey: newP256(t).Public(), SPIFFEID: "spiffe://example.org/t"})
	if err != nil {
		t.Fatal(err)
	}
	s := got.Certificate.SerialNumber
	if ms := new(big.Int).Rsh(s, 80).Int64() &^ (1 << 46); ms != u.clock.Now().UnixMilli() || s.BitLen() != 127 {
		t.Errorf("serial %x carries %d ms, want the clock's %d and 127 bits", s, ms, u.clock.Now().UnixMilli())
	}
}
