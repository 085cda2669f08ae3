package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// The CA key signs the linted tbsCertificate itself rather than a second
// x509.CreateCertificate of the same template: crypto/x509 has no API to sign
// given TBS bytes, and the second call cost a template encoding, a parse and
// a byte comparison per issuance (issue 20). Signing the linted bytes makes
// "what the CA signs is what was linted" hold by construction; the signature
// is then checked with the issuer certificate's public key, as
// x509.CreateCertificate checks every signature it makes (a faulty signature
// can leak the key).

// signatureScheme is how the CA key signs a tbsCertificate: the algorithm
// crypto/x509 chose for this key (learnt once, from a sample certificate),
// its AlgorithmIdentifier as encoded, and the hash to sign with.
type signatureScheme struct {
	algo  x509.SignatureAlgorithm
	der   []byte // the signatureAlgorithm AlgorithmIdentifier, DER
	hash  crypto.Hash
	plain bool // Ed25519: the signer takes the message, not a digest
}

// learnSignatureScheme signs a sample certificate with signer and reads back
// the algorithm crypto/x509 chose, so no rule of x509's choice is repeated.
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
	_, algDER, _, err := splitCertificate(der)
	if err != nil {
		return signatureScheme{}, err
	}
	s := signatureScheme{algo: c.SignatureAlgorithm, der: bytes.Clone(algDER)}
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

// splitCertificate returns the tbsCertificate, the signatureAlgorithm and
// the signature value (the BIT STRING's bytes) of a DER certificate.
func splitCertificate(der []byte) (tbs, algo, sig []byte, err error) {
	in := cryptobyte.String(der)
	var cert, tbsE, algE cryptobyte.String
	var bits []byte
	var bs cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() ||
		!cert.ReadASN1Element(&tbsE, cbasn1.SEQUENCE) ||
		!cert.ReadASN1Element(&algE, cbasn1.SEQUENCE) ||
		!cert.ReadASN1(&bs, cbasn1.BIT_STRING) || !cert.Empty() ||
		len(bs) < 1 || bs[0] != 0 {
		return nil, nil, nil, errors.New("issuer: malformed certificate")
	}
	bits = bs[1:]
	return tbsE, algE, bits, nil
}

// signLinted returns the certificate the CA key makes of lintDER's
// tbsCertificate: the same tbsCertificate and signatureAlgorithm, the CA's
// signature, checked against the issuer certificate before it is returned.
func (i *Issuer) signLinted(ctx context.Context, lintDER []byte) ([]byte, error) {
	tbs, algo, _, err := splitCertificate(lintDER)
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
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(algo)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}
