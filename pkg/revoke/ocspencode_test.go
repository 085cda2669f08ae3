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
	"errors"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// The hand encoder (ocspencode.go) is held to ocsp.CreateResponse: for the
// same input and producedAt the whole response must be the same bytes. ECDSA
// signatures are randomised, so the reference is signed through a
// recordingSigner and the hand encoder through a replaySigner that returns
// the same signature value, after checking that it was asked to sign the
// same digest with the same hash.

type recordingSigner struct {
	crypto.Signer
	digest, sig []byte
	opts        crypto.SignerOpts
}

func (s *recordingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := s.Signer.Sign(r, digest, opts)
	s.digest, s.sig, s.opts = bytes.Clone(digest), sig, opts
	return sig, err
}

type replaySigner struct {
	t   testing.TB
	rec *recordingSigner
}

func (s replaySigner) Public() crypto.PublicKey { return s.rec.Public() }

func (s replaySigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.t.Helper()
	if !bytes.Equal(digest, s.rec.digest) || opts.HashFunc() != s.rec.opts.HashFunc() {
		s.t.Errorf("hand encoder signs digest %x with %v, ocsp.CreateResponse signed %x with %v",
			digest, opts.HashFunc(), s.rec.digest, s.rec.opts.HashFunc())
	}
	return s.rec.sig, nil
}

// encPKI is an issuer and responders of several key types for encoder tests.
type encPKI struct {
	issuers    []*x509.Certificate
	responders []encResponder
}

type encResponder struct {
	name   string
	cert   *x509.Certificate // issued by issuers[issuer]
	issuer int
	key    crypto.Signer
}

var (
	encPKIOnce sync.Once
	encPKIVal  encPKI
	encPKIErr  error
)

// testEncPKI builds (once per test binary: RSA keys are slow) two issuers,
// ECDSA P-256 and RSA, and responders with P-256, P-384, P-521, RSA and
// Ed25519 keys under them.
func testEncPKI(t testing.TB) encPKI {
	t.Helper()
	encPKIOnce.Do(func() { encPKIVal, encPKIErr = newEncPKI() })
	if encPKIErr != nil {
		t.Fatal(encPKIErr)
	}
	return encPKIVal
}

func newEncPKI() (encPKI, error) {
	var p encPKI
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return p, err
	}
	issuerKeys := []crypto.Signer{ecKey, rsaKey}
	for i, k := range issuerKeys {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: "encoder test CA", Organization: []string{"workload-ca"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
		if err != nil {
			return p, err
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return p, err
		}
		p.issuers = append(p.issuers, c)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaResp, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return p, err
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []struct {
		name string
		key  crypto.Signer
	}{{"P-256", p256}, {"P-384", p384}, {"P-521", p521}, {"RSA", rsaResp}, {"Ed25519", edKey}}
	for i, k := range keys {
		for j, iss := range p.issuers {
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(int64(100 + 10*i + j)), Subject: pkix.Name{CommonName: "encoder test responder " + k.name},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
				KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, iss, k.key.Public(), issuerKeys[j])
			if err != nil {
				return p, err
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return p, err
			}
			p.responders = append(p.responders, encResponder{name: k.name + " under " + iss.PublicKeyAlgorithm.String(), cert: c, issuer: j, key: k.key})
		}
	}
	return p, nil
}

// checkEncoding signs e with ocsp.CreateResponse and, if the hand encoder
// covers e, with the hand encoder, and fails unless the two responses are
// the same bytes (producedAt taken from the reference). It returns whether
// the hand encoder covered e.
func checkEncoding(t *testing.T, iss *x509.Certificate, r encResponder, e ocspEntry, h crypto.Hash) bool {
	t.Helper()
	rec := &recordingSigner{Signer: r.key}
	want, wantErr := createResponse(iss, r.cert, e, h, rec)
	if _, isEd := r.key.(ed25519.PrivateKey); isEd && wantErr == nil {
		t.Fatalf("%s: ocsp.CreateResponse signs with Ed25519 now; the hand encoder could cover it", r.name)
	}
	tmpl, ok := newOCSPTemplate(iss, r.cert, h)
	if !ok {
		if wantErr == nil {
			t.Fatalf("%s, %v: no template, but ocsp.CreateResponse signs", r.name, h)
		}
		return false
	}
	if wantErr == nil {
		ref, err := ocsp.ParseResponse(want, nil)
		if err != nil {
			// encoding/asn1 writes some times it cannot read back (years
			// before 1 or so); the bytes are still compared.
			e.producedAt = time.Now().Truncate(time.Minute).UTC()
		} else {
			e.producedAt = ref.ProducedAt
		}
	} else {
		e.producedAt = time.Now().Truncate(time.Minute).UTC()
	}
	got, err := tmpl.response(replaySigner{t, rec}, e)
	if errors.Is(err, errNotCovered) {
		return false
	}
	if wantErr != nil || err != nil {
		t.Fatalf("%s, %v, %+v: ocsp.CreateResponse: %v; hand encoder: %v", r.name, h, e, wantErr, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s, %v, %+v: hand-encoded response differs from ocsp.CreateResponse's\n got %x\nwant %x", r.name, h, e, got, want)
	}
	return true
}

// checkParses signs e with the hand encoder and the real key and checks that
// ocsp.ParseResponseForCert accepts it, verifies its signature with the
// responder certificate (and that with the issuer), and reads back e.
func checkParses(t *testing.T, iss *x509.Certificate, r encResponder, e ocspEntry, h crypto.Hash) {
	t.Helper()
	tmpl, ok := newOCSPTemplate(iss, r.cert, h)
	if !ok {
		t.Fatalf("%s, %v: no template", r.name, h)
	}
	e.producedAt = time.Now().Truncate(time.Minute).UTC()
	der, err := tmpl.response(r.key, e)
	if err != nil {
		t.Fatalf("%s, %v, %+v: %v", r.name, h, e, err)
	}
	leaf := &x509.Certificate{SerialNumber: e.serial}
	got, err := ocsp.ParseResponseForCert(der, leaf, iss)
	if err != nil {
		t.Fatalf("%s, %v, %+v: ParseResponseForCert: %v", r.name, h, e, err)
	}
	if err := got.CheckSignatureFrom(r.cert); err != nil {
		t.Fatalf("%s: signature does not verify with the responder certificate: %v", r.name, err)
	}
	want := []bool{
		got.SerialNumber.Cmp(e.serial) == 0, got.Status == e.status, got.IssuerHash == h,
		got.ThisUpdate.Equal(e.thisUpdate.Truncate(time.Second)), got.NextUpdate.Equal(e.nextUpdate.Truncate(time.Second)),
		got.ProducedAt.Equal(e.producedAt), got.Certificate != nil && got.Certificate.Equal(r.cert),
		bytes.Equal(got.RawResponderName, r.cert.RawSubject),
	}
	if e.status == ocsp.Revoked {
		want = append(want, got.RevokedAt.Equal(e.revokedAt.Truncate(time.Second)), got.RevocationReason == e.reason)
	}
	for i, ok := range want {
		if !ok {
			t.Fatalf("%s, %v, %+v: check %d fails on the parsed response %+v", r.name, h, e, i, got)
		}
	}
}

var encHashes = []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}

// randomSerial: 0 to 24 bytes (empty is 0), often with the top bit set, now
// and then negative, as requests can name any INTEGER.
func randomSerial(rng *mrand.Rand) *big.Int {
	b := make([]byte, rng.IntN(25))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if len(b) > 0 && rng.IntN(2) == 0 {
		b[0] |= 0x80
	}
	s := new(big.Int).SetBytes(b)
	if rng.IntN(8) == 0 {
		s.Neg(s)
	}
	return s
}

// randomTime is a time between 1950 and 2100 with nanoseconds (dropped by
// the encoding) in a random zone (converted to UTC by the encoding).
func randomTime(rng *mrand.Rand) time.Time {
	lo, hi := time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	t := time.Unix(lo+rng.Int64N(hi-lo), rng.Int64N(1e9))
	return t.In(time.FixedZone("test", (rng.IntN(27)-13)*3600))
}

func randomEntry(rng *mrand.Rand) ocspEntry {
	e := ocspEntry{serial: randomSerial(rng), status: []int{ocsp.Good, ocsp.Revoked, ocsp.Unknown}[rng.IntN(3)]}
	e.thisUpdate = randomTime(rng)
	if rng.IntN(10) != 0 {
		e.nextUpdate = e.thisUpdate.Add(time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
	}
	if e.status == ocsp.Revoked {
		e.revokedAt = randomTime(rng)
		switch rng.IntN(4) {
		case 0:
			e.reason = ocsp.Unspecified
		case 1:
			e.reason = []int{-1, 11, 127, 128, 255, 256, 1 << 40, -1 << 40}[rng.IntN(8)]
		default:
			e.reason = rng.IntN(11)
		}
	}
	return e
}

func TestOCSPResponseMatchesXCrypto(t *testing.T) {
	p := testEncPKI(t)
	rng := mrand.New(mrand.NewPCG(1, uint64(time.Now().UnixNano())))
	n := 25
	if testing.Short() {
		n = 10
	}
	for _, r := range p.responders {
		iss := p.issuers[r.issuer]
		covered := 0
		for _, h := range encHashes {
			for range n {
				e := randomEntry(rng)
				if checkEncoding(t, iss, r, e, h) {
					covered++
					if e.reason == int(int32(e.reason)) { // encoding/asn1 reads ENUMERATED into an int32
						checkParses(t, iss, r, e, h)
					}
				}
			}
		}
		_, isEd := r.key.(ed25519.PrivateKey)
		if isEd != (covered == 0) {
			t.Errorf("%s: hand encoder covered %d of %d inputs", r.name, covered, n*len(encHashes))
		}
	}
}

// TestOCSPResponseEdgesMatchXCrypto pins the inputs most likely to differ:
// serial and reason encodings, unspecified (left out), truncated seconds,
// no nextUpdate, and inputs left to ocsp.CreateResponse.
func TestOCSPResponseEdgesMatchXCrypto(t *testing.T) {
	p := testEncPKI(t)
	r, iss := p.responders[0], p.issuers[p.responders[0].issuer]
	now := time.Date(2026, 12, 5, 17, 30, 59, 999999999, time.FixedZone("CET", 3600))
	serials := []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(127), big.NewInt(128), big.NewInt(255), big.NewInt(256),
		big.NewInt(-1), big.NewInt(-128), big.NewInt(-129), new(big.Int).Lsh(big.NewInt(1), 159), new(big.Int).Lsh(big.NewInt(1), 160)}
	for _, s := range serials {
		for _, st := range []int{ocsp.Good, ocsp.Unknown} {
			e := ocspEntry{serial: s, status: st, thisUpdate: now, nextUpdate: now.Add(time.Hour)}
			if !checkEncoding(t, iss, r, e, crypto.SHA1) {
				t.Fatalf("%+v not covered", e)
			}
		}
	}
	for _, reason := range []int{0, 1, 6, 8, 10, -1, 128, 1 << 40} {
		e := ocspEntry{serial: big.NewInt(42), status: ocsp.Revoked, revokedAt: now.Add(-time.Minute), reason: reason, thisUpdate: now, nextUpdate: now.Add(time.Hour)}
		if !checkEncoding(t, iss, r, e, crypto.SHA256) {
			t.Fatalf("%+v not covered", e)
		}
	}
	// No nextUpdate; years at the ends of GeneralizedTime.
	for _, tu := range []time.Time{now, time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(999, 3, 4, 5, 6, 7, 8, time.UTC)} {
		e := ocspEntry{serial: big.NewInt(7), status: ocsp.Good, thisUpdate: tu}
		if !checkEncoding(t, iss, r, e, crypto.SHA1) {
			t.Fatalf("%+v not covered", e)
		}
	}
	// Left to ocsp.CreateResponse, which answers or fails as before.
	for _, e := range []ocspEntry{
		{serial: big.NewInt(1), status: ocsp.Revoked, thisUpdate: now},                                       // no revocation time
		{serial: big.NewInt(1), status: ocsp.ServerFailed, thisUpdate: now},                                  // no certStatus
		{serial: big.NewInt(1), status: ocsp.Good, thisUpdate: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, // year 10000
		{serial: nil, status: ocsp.Good, thisUpdate: now},
	} {
		if checkEncoding(t, iss, r, e, crypto.SHA1) {
			t.Errorf("%+v covered by the hand encoder", e)
		}
	}
	for _, h := range []crypto.Hash{0, crypto.MD5, crypto.SHA224, crypto.SHA3_256} {
		if _, ok := newOCSPTemplate(iss, r.cert, h); ok {
			t.Errorf("template for CertID hash %v", h)
		}
	}
}

// TestOCSPSignMatchesXCrypto checks sign itself, with the fixture's responder
// and the fallback: a response signed by sign equals ocsp.CreateResponse's
// apart from the signature value and verifies.
func TestOCSPSignMatchesXCrypto(t *testing.T) {
	f := newFixture(t, sqliteBackend, shortConfig())
	leaf := f.leaf("sign", 2*time.Hour)
	p := f.publisher()
	f.refresh(p)
	c, err := p.cas.get(f.ctx, f.interID)
	if err != nil || c == nil {
		t.Fatalf("cas.get: %v, %v", c, err)
	}
	r, err := p.signer.responder(f.ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range encHashes {
		if p.signer.template(r, c, h) == nil {
			t.Fatalf("%v: sign does not use the hand encoder", h)
		}
		for _, st := range []int{ocsp.Good, ocsp.Revoked, ocsp.Unknown} {
			rec := &recordingSigner{Signer: r.Signer}
			rr := r
			rr.Signer = rec
			s, err := p.signer.sign(rr, c, leaf.Certificate.SerialNumber, st, f.clk.Now().Add(-time.Minute), 1, h, "test")
			if err != nil {
				t.Fatal(err)
			}
			got, err := ocsp.ParseResponseForCert(s.der, leaf.Certificate, f.inter)
			if err != nil {
				t.Fatalf("%v, status %d: %v", h, st, err)
			}
			if got.Status != st || got.IssuerHash != h || !got.ThisUpdate.Equal(s.thisUpdate) || !got.NextUpdate.Equal(s.nextUpdate) {
				t.Fatalf("%v, status %d: parsed %+v", h, st, got)
			}
			e := ocspEntry{serial: leaf.Certificate.SerialNumber, status: st, thisUpdate: s.thisUpdate, nextUpdate: s.nextUpdate}
			if st == ocsp.Revoked {
				e.revokedAt, e.reason = got.RevokedAt, got.RevocationReason
			}
			want, err := createResponse(c.cert, r.Certificate, e, h, replaySigner{t, rec})
			if err != nil {
				t.Fatal(err)
			}
			if ref, err := ocsp.ParseResponse(want, nil); err != nil || !ref.ProducedAt.Equal(got.ProducedAt) {
				continue // a minute turned between the two
			}
			if !bytes.Equal(s.der, want) {
				t.Fatalf("%v, status %d: sign's response differs from ocsp.CreateResponse's\n got %x\nwant %x", h, st, s.der, want)
			}
		}
	}
	if _, err := p.signer.sign(r, c, leaf.Certificate.SerialNumber, ocsp.Good, time.Time{}, 0, crypto.MD5, "test"); err == nil {
		t.Error("sign with an MD5 CertID: no error (ocsp.CreateResponse refuses it)")
	}
}

// FuzzOCSPResponseMatchesXCrypto: for any serial, status, reason, times and
// CertID hash, the hand encoder's response is ocsp.CreateResponse's byte for
// byte (or the input is left to ocsp.CreateResponse). The seed corpus is in
// testdata/fuzz; plain `go test` replays it.
func FuzzOCSPResponseMatchesXCrypto(f *testing.F) {
	p := testEncPKI(f)
	f.Fuzz(func(t *testing.T, serial []byte, negative bool, status, hash, responder uint8, reason int64, this, next, revoked int64, nanos uint32) {
		s := new(big.Int).SetBytes(serial)
		if negative {
			s.Neg(s)
		}
		// Seconds within a little more than GeneralizedTime's years 0-9999.
		lo, hi := time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(10001, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
		at := func(sec int64) time.Time {
			if sec == 0 {
				return time.Time{}
			}
			return time.Unix(lo+int64(uint64(sec)%uint64(hi-lo)), int64(nanos%1e9))
		}
		e := ocspEntry{serial: s, status: int(status % 4), reason: int(reason), thisUpdate: at(this), nextUpdate: at(next), revokedAt: at(revoked)}
		r := p.responders[int(responder)%len(p.responders)]
		checkEncoding(t, p.issuers[r.issuer], r, e, encHashes[int(hash)%len(encHashes)])
	})
}
