package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/workload-ca/workload-ca/internal/der"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// An issuance encodes the leaf's tbsCertificate once, lints it, and has the
// CA key sign those very bytes (issue 20: this replaced two
// x509.CreateCertificate calls, each with a signature and crypto/x509's
// check of it, and a byte comparison of the two tbsCertificates).
//
// crypto/x509 has no API that encodes a tbsCertificate without signing it, so
// lintCopy has x509.CreateCertificate "sign" with captureSigner: an Ed25519
// signer, which crypto/x509 hands the whole tbsCertificate (Ed25519 signs the
// message, not a digest); it keeps the bytes and fails the call, so nothing
// is signed. The tbsCertificate's signature field then names Ed25519, and is
// replaced by the AlgorithmIdentifier the CA key signs with, learnt once
// per issuer from a throwaway key of the CA key's type (signatureScheme).
// signLinted signs the linted tbsCertificate with the CA key and checks the
// signature against the issuer certificate, as crypto/x509 checks every
// signature it makes (a faulty signature can leak the key).

// captureKey is the public key of the lint parent; no private key is used.
var captureKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)

// captureSigner is the crypto.Signer lintCopy passes to
// x509.CreateCertificate: it returns the message as a *capturedTBS error.
type captureSigner struct{}

func (captureSigner) Public() crypto.PublicKey { return captureKey }

func (captureSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != 0 {
		return nil, errors.New("issuer: the capture signer was handed a digest")
	}
	return nil, &capturedTBS{tbs: bytes.Clone(msg)}
}

// capturedTBS carries the tbsCertificate out of x509.CreateCertificate.
type capturedTBS struct{ tbs []byte }

func (*capturedTBS) Error() string { return "issuer: tbsCertificate captured" }

// signatureScheme is how the CA key signs a tbsCertificate: the algorithm
// crypto/x509 chooses for its key type, its AlgorithmIdentifier as encoded,
// the hash to sign with, and a signature of that algorithm's shape (from the
// throwaway key) for the lint copy, which zlint parses but never verifies.
type signatureScheme struct {
	algo   x509.SignatureAlgorithm
	der    []byte // the signatureAlgorithm AlgorithmIdentifier, DER
	hash   crypto.Hash
	plain  bool // Ed25519: the signer takes the message, not a digest
	sample []byte
}

// learnSignatureScheme signs a sample certificate with signer (a throwaway
// key of the CA key's type) and reads back what crypto/x509 chose, so no
// rule of crypto/x509's choice is repeated here.
func learnSignatureScheme(parent *x509.Certificate, signer crypto.Signer) (signatureScheme, error) {
	sample := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1, 0)}
	der, err := x509.CreateCertificate(rand.Reader, sample, parent, signer.Public(), signer)
	if err != nil {
		return signatureScheme{}, fmt.Errorf("issuer: learning the signature algorithm: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return signatureScheme{}, fmt.Errorf("issuer: learning the signature algorithm: %w", err)
	}
	_, algDER, sig, err := splitCertificate(der)
	if err != nil {
		return signatureScheme{}, err
	}
	s := signatureScheme{algo: c.SignatureAlgorithm, der: bytes.Clone(algDER), sample: bytes.Clone(sig)}
	switch c.SignatureAlgorithm {
	case x509.ECDSAWithSHA256, x509.SHA256WithRSA:
		s.hash = crypto.SHA256
	case x509.ECDSAWithSHA384, x509.SHA384WithRSA:
		s.hash = crypto.SHA384
	case x509.ECDSAWithSHA512, x509.SHA512WithRSA:
		s.hash = crypto.SHA512
	case x509.PureEd25519:
		s.plain = true
	default:
		return signatureScheme{}, fmt.Errorf("issuer: unsupported signature algorithm %v", c.SignatureAlgorithm)
	}
	return s, nil
}

// lintCopy encodes tmpl for pub under the lint parent and returns the
// certificate to lint: the tbsCertificate the CA key will sign, the CA key's
// signatureAlgorithm and a placeholder signature.
func (l *lintIssuer) lintCopy(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	_, err := x509.CreateCertificate(rand.Reader, tmpl, l.parent, pub, captureSigner{})
	var captured *capturedTBS
	if !errors.As(err, &captured) {
		if err == nil {
			err = errors.New("the tbsCertificate was not captured")
		}
		return nil, fmt.Errorf("%w: building certificate: %v", ErrLint, err)
	}
	cert, err := certificateWithAlgorithm(captured.tbs, l.scheme.der, l.scheme.sample)
	if err != nil {
		return nil, fmt.Errorf("%w: building certificate: %v", ErrLint, err)
	}
	return cert, nil
}

// certificateWithAlgorithm returns the certificate made of tbs with its
// signature AlgorithmIdentifier (the third field, after the version and the
// serial) replaced by algo, the signatureAlgorithm algo and the signature
// sig (RFC 5280, 4.1), encoded once in one buffer.
func certificateWithAlgorithm(tbs, algo, sig []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body, version, serial, old cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() ||
		!body.ReadASN1Element(&version, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!body.ReadASN1Element(&serial, cbasn1.INTEGER) ||
		!body.ReadASN1Element(&old, cbasn1.SEQUENCE) {
		return nil, errors.New("issuer: malformed tbsCertificate")
	}
	n := len(version) + len(serial) + len(algo) + len(body)
	out := newCertificate(der.HeaderLen(n)+n, len(algo), len(sig))
	out = der.AppendHeader(out, byte(cbasn1.SEQUENCE), n)
	out = append(append(append(append(out, version...), serial...), algo...), body...)
	return der.AppendSignature(out, algo, sig), nil
}

// assembleCertificate encodes Certificate ::= SEQUENCE { tbsCertificate,
// signatureAlgorithm, signatureValue BIT STRING } (RFC 5280, 4.1).
func assembleCertificate(tbs, algo, sig []byte) ([]byte, error) {
	out := append(newCertificate(len(tbs), len(algo), len(sig)), tbs...)
	return der.AppendSignature(out, algo, sig), nil
}

// The encodings of a certificate are written here rather than with a
// cryptobyte.Builder, which allocates a child builder per element and grows
// its buffer as it goes: they are a few DER headers around bytes already
// encoded, written into one buffer of the final size (issue 20: allocations
// per issuance). TestCertificateWithAlgorithmIsOneEncoding holds them to
// cryptobyte's bytes.

// newCertificate returns a buffer holding the header of a Certificate whose
// tbsCertificate element is tbs bytes, its signatureAlgorithm element algo
// bytes and its signature sig bytes, with room for the rest.
func newCertificate(tbs, algo, sig int) []byte {
	n := tbs + der.SignatureLen(algo, sig)
	return der.AppendHeader(make([]byte, 0, der.HeaderLen(n)+n), byte(cbasn1.SEQUENCE), n)
}

// splitCertificate returns the tbsCertificate and signatureAlgorithm (each
// as encoded) and the signature value of a DER certificate.
func splitCertificate(certDER []byte) (tbs, algo, sig []byte, err error) {
	in := cryptobyte.String(certDER)
	var cert, tbsE, algE, bits cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() ||
		!cert.ReadASN1Element(&tbsE, cbasn1.SEQUENCE) ||
		!cert.ReadASN1Element(&algE, cbasn1.SEQUENCE) ||
		!cert.ReadASN1(&bits, cbasn1.BIT_STRING) || !cert.Empty() ||
		len(bits) < 1 || bits[0] != 0 {
		return nil, nil, nil, errors.New("issuer: malformed certificate")
	}
	return tbsE, algE, bits[1:], nil
}

// signLinted returns the certificate the CA key makes of the linted copy:
// the same tbsCertificate and signatureAlgorithm with the CA's signature,
// checked against the issuer certificate before it is returned.
func (i *Issuer) signLinted(ctx context.Context, linted []byte) ([]byte, error) {
	tbs, algo, _, err := splitCertificate(linted)
	if err != nil {
		return nil, err
	}
	s := i.lint.scheme
	if !bytes.Equal(algo, s.der) {
		return nil, errSignedNotLinted
	}
	signer := hsm.WithContext(ctx, i.signer)
	var sig []byte
	if s.plain {
		sig, err = signer.Sign(rand.Reader, tbs, crypto.Hash(0))
	} else {
		h := s.hash.New()
		h.Write(tbs)
		sig, err = signer.Sign(rand.Reader, h.Sum(nil), s.hash)
	}
	if err != nil {
		return nil, fmt.Errorf("issuer: signing with %q: %w", i.rec.ID, err)
	}
	if err := i.cert.CheckSignature(s.algo, tbs, sig); err != nil {
		return nil, fmt.Errorf("issuer: signing with %q: the signature made does not verify: %w", i.rec.ID, err)
	}
	return assembleCertificate(tbs, algo, sig)
}
