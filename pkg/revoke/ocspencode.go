package revoke

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/der"
)

// Why this file encodes OCSP responses itself instead of always calling
// ocsp.CreateResponse: every enrollment signs one pre-signed response right
// after it is answered, and in a CPU profile of `ca serve` under enrollment
// load ocsp.CreateResponse was about 4% of the server's CPU, of which about
// 37% was encoding/asn1.Marshal's reflection and a further part work that
// depends only on the issuer and the responder (asn1.Unmarshal of the
// issuer's SubjectPublicKeyInfo and the CertID hashes, redone on every
// call). Here that part is computed once per (issuer, responder, CertID
// hash) in an ocspTemplate, the per-response part (tbsResponseData) is
// written with cryptobyte and the envelope around it with computed lengths.
// BenchmarkOCSPSign (software ECDSA P-256 responder, 2 shared cores) went
// from 14920 B/op, 255 allocs/op, about 65 µs of CPU per response to 8288
// B/op, 74 allocs/op (55 of them in crypto/ecdsa), about 42 µs; the ECDSA
// signature is now about 85% of it.
//
// The output is held to ocsp.CreateResponse byte for byte: for the same
// input and producedAt, TestOCSPResponseMatchesXCrypto and
// FuzzOCSPResponseMatchesXCrypto check that the whole response is
// identical (with the signature value replayed, as ECDSA signatures are
// randomised), that the signed digest and hash are the same, and that
// ocsp.ParseResponseForCert verifies the result. Anything this encoder does
// not cover (another CertID hash, a responder key other than ECDSA P-224 to
// P-521 or RSA, a Revoked status without a revocation time, a status
// outside Good/Revoked/Unknown, a time outside years 0-9999) goes to
// ocsp.CreateResponse, so that it answers or fails exactly as before.

// ocspTemplate is the part of a response that depends only on the issuer,
// the responder certificate and the CertID hash.
type ocspTemplate struct {
	// certIDHead is the CertID's contents up to the serial: hashAlgorithm,
	// issuerNameHash and issuerKeyHash.
	certIDHead []byte
	// responderID is [1] EXPLICIT Name: the responder's subject, as
	// ocsp.CreateResponse names the responder (byName).
	responderID []byte
	// certs is [0] EXPLICIT SEQUENCE OF Certificate holding the responder
	// certificate, so that clients can verify the delegation.
	certs []byte
}

// DER of the AlgorithmIdentifiers ocsp.CreateResponse signs with, by the
// responder's key: ECDSA without parameters, RSA with NULL parameters.
var (
	derECDSAWithSHA256 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}
	derECDSAWithSHA384 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}
	derECDSAWithSHA512 = []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04}
	derSHA256WithRSA   = []byte{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00}
	// derOCSPBasic is the OBJECT IDENTIFIER id-pkix-ocsp-basic.
	derOCSPBasic = []byte{0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01}
	// derSuccessful is the OCSPResponseStatus successful (ENUMERATED 0).
	derSuccessful = []byte{0x0a, 0x01, 0x00}
)

// ocspSigningParams is what ocsp.CreateResponse signs with for a responder
// key (no SignatureAlgorithm requested): the digest and the DER
// AlgorithmIdentifier; ok is false for keys it is not written for here.
func ocspSigningParams(pub crypto.PublicKey) (h crypto.Hash, algID []byte, ok bool) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P224(), elliptic.P256():
			return crypto.SHA256, derECDSAWithSHA256, true
		case elliptic.P384():
			return crypto.SHA384, derECDSAWithSHA384, true
		case elliptic.P521():
			return crypto.SHA512, derECDSAWithSHA512, true
		}
	case *rsa.PublicKey:
		return crypto.SHA256, derSHA256WithRSA, true
	}
	return 0, nil, false
}

// newOCSPTemplate computes the fixed part of responses about certificates
// of issuer signed by responder with CertIDs hashed with h. ok is false
// where ocsp.CreateResponse must be asked instead.
func newOCSPTemplate(issuer, responder *x509.Certificate, h crypto.Hash) (t *ocspTemplate, ok bool) {
	if issuer == nil || responder == nil || !h.Available() {
		return nil, false
	}
	var oid string
	for _, c := range hashOIDContents {
		if c.hash == h {
			oid = c.der
		}
	}
	if oid == "" {
		return nil, false
	}
	// The issuer key hash covers the subjectPublicKey BIT STRING's value,
	// as ocsp.CreateResponse takes it (RightAlign).
	spki := cryptobyte.String(issuer.RawSubjectPublicKeyInfo)
	var inner cryptobyte.String
	if !spki.ReadASN1(&inner, cbasn1.SEQUENCE) || !inner.SkipASN1(cbasn1.SEQUENCE) {
		return nil, false
	}
	key, ok := readBitString(&inner)
	if !ok {
		return nil, false
	}
	d := h.New()
	d.Write(issuer.RawSubject)
	nameHash := d.Sum(nil)
	d.Reset()
	d.Write(key)
	keyHash := d.Sum(nil)

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes([]byte(oid)) })
		b.AddASN1NULL()
	})
	b.AddASN1OctetString(nameHash)
	b.AddASN1OctetString(keyHash)
	head, err := b.Bytes()
	if err != nil {
		return nil, false
	}
	var rid cryptobyte.Builder
	rid.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(responder.RawSubject) })
	responderID, err := rid.Bytes()
	if err != nil {
		return nil, false
	}
	var cs cryptobyte.Builder
	cs.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(responder.Raw) })
	})
	certs, err := cs.Bytes()
	if err != nil {
		return nil, false
	}
	return &ocspTemplate{certIDHead: head, responderID: responderID, certs: certs}, true
}

// readBitString reads a DER BIT STRING and returns its value right-aligned
// the way encoding/asn1's BitString.RightAlign does (a key's has no padding
// bits, so that is its bytes).
func readBitString(s *cryptobyte.String) ([]byte, bool) {
	var bs cryptobyte.String
	if !s.ReadASN1(&bs, cbasn1.BIT_STRING) || len(bs) == 0 {
		return nil, false
	}
	if bs[0] != 0 {
		return nil, false // padding bits: leave the exact rules to encoding/asn1
	}
	return bs[1:], true
}

// ocspEntry is the part of a response that changes with every response.
type ocspEntry struct {
	serial                 *big.Int
	status                 int // ocsp.Good, ocsp.Revoked or ocsp.Unknown
	revokedAt              time.Time
	reason                 int
	thisUpdate, nextUpdate time.Time // a zero nextUpdate is left out
	producedAt             time.Time
}

// covered reports whether the hand encoder writes e exactly as
// ocsp.CreateResponse would.
func (e ocspEntry) covered() bool {
	if e.serial == nil {
		return false
	}
	switch e.status {
	case ocsp.Good, ocsp.Unknown:
	case ocsp.Revoked:
		// encoding/asn1 leaves out an all-zero revokedInfo (optional).
		if e.revokedAt.IsZero() || !generalizable(e.revokedAt) {
			return false
		}
	default:
		return false
	}
	return generalizable(e.thisUpdate) && generalizable(e.producedAt) &&
		(e.nextUpdate.IsZero() || generalizable(e.nextUpdate))
}

// generalizable: GeneralizedTime has four year digits.
func generalizable(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// tbs appends the DER tbsResponseData for e to dst: version (default, left
// out), responderID, producedAt, and one SingleResponse.
func (t *ocspTemplate) tbs(dst []byte, e ocspEntry) ([]byte, error) {
	b := cryptobyte.NewBuilder(dst)
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(t.responderID)
		addGeneralizedTime(b, e.producedAt)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(t.certIDHead)
					b.AddASN1BigInt(e.serial)
				})
				switch e.status {
				case ocsp.Good:
					b.AddBytes([]byte{0x80, 0x00}) // [0] IMPLICIT NULL
				case ocsp.Revoked:
					b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						addGeneralizedTime(b, e.revokedAt)
						if e.reason != 0 { // optional, so encoding/asn1 leaves out unspecified (0)
							b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddASN1Enum(int64(e.reason))
							})
						}
					})
				case ocsp.Unknown:
					b.AddBytes([]byte{0x82, 0x00}) // [2] IMPLICIT NULL
				}
				addGeneralizedTime(b, e.thisUpdate)
				if !e.nextUpdate.IsZero() {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						addGeneralizedTime(b, e.nextUpdate)
					})
				}
			})
		})
	})
	return b.Bytes()
}

// tbsSize is a bound on the size of t.tbs(e), to allocate once.
func (t *ocspTemplate) tbsSize(e ocspEntry) int {
	const times = 4 * (2 + 2 + 15) // four GeneralizedTimes, with a tag each around two
	return len(t.responderID) + len(t.certIDHead) + e.serial.BitLen()/8 + 1 + times + 4*6 + 16
}

// addGeneralizedTime writes t as encoding/asn1 does for a `generalized`
// field: UTC, whole seconds (fractions dropped), YYYYMMDDHHMMSSZ.
func addGeneralizedTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	var buf [15]byte
	b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) {
		b.AddBytes(t.AppendFormat(buf[:0], "20060102150405Z"))
	})
}

// errNotCovered is returned by response for input left to ocsp.CreateResponse.
var errNotCovered = errors.New("revoke: OCSP response not covered by the hand encoder")

// response encodes and signs the complete OCSPResponse for e with priv, as
// ocsp.CreateResponse does: the digest of tbsResponseData with the hash for
// priv's key type, signed with crypto/rand. errNotCovered means the caller
// must use ocsp.CreateResponse.
func (t *ocspTemplate) response(priv crypto.Signer, e ocspEntry) ([]byte, error) {
	if !e.covered() {
		return nil, errNotCovered
	}
	h, algID, ok := ocspSigningParams(priv.Public())
	if !ok {
		return nil, errNotCovered
	}
	tbs, err := t.tbs(make([]byte, 0, t.tbsSize(e)), e)
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(tbs)
	var sum [64]byte
	sig, err := priv.Sign(rand.Reader, d.Sum(sum[:0]), h)
	if err != nil {
		return nil, err
	}
	// The envelope around tbsResponseData is written with lengths computed
	// here, sized exactly as the response is kept (stored, cached) as it is:
	// OCSPResponse { ENUMERATED successful, [0] EXPLICIT ResponseBytes {
	// id-pkix-ocsp-basic, OCTET STRING { BasicOCSPResponse { tbs, algID,
	// BIT STRING sig, certs }}}}.
	basic := len(tbs) + der.SignatureLen(len(algID), len(sig)) + len(t.certs)
	octets := der.HeaderLen(basic) + basic
	respBytes := len(derOCSPBasic) + der.HeaderLen(octets) + octets
	explicit := der.HeaderLen(respBytes) + respBytes
	outer := len(derSuccessful) + der.HeaderLen(explicit) + explicit
	out := make([]byte, 0, der.HeaderLen(outer)+outer)
	out = der.AppendHeader(out, 0x30, outer)
	out = append(out, derSuccessful...)
	out = der.AppendHeader(out, 0xa0, explicit)
	out = der.AppendHeader(out, 0x30, respBytes)
	out = append(out, derOCSPBasic...)
	out = der.AppendHeader(out, 0x04, octets)
	out = der.AppendHeader(out, 0x30, basic)
	out = append(out, tbs...)
	out = der.AppendSignature(out, algID, sig)
	return append(out, t.certs...), nil
}
