package bundle

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// ErrInvalidContent means stored or supplied bundle content does not parse
// or holds something that is not a CA certificate or a usable public key.
var ErrInvalidContent = errors.New("bundle: invalid content")

// JWTAuthority is one JWT-SVID signing key as the bundle publishes it.
type JWTAuthority struct {
	// KeyID is the JWS kid the JWT-SVIDs carry; required and unique.
	KeyID string `json:"kid"`
	// SPKI is the DER SubjectPublicKeyInfo of the key.
	SPKI []byte `json:"spki"`
}

// NewJWTAuthority builds a JWTAuthority from a public key.
func NewJWTAuthority(keyID string, pub crypto.PublicKey) (JWTAuthority, error) {
	if keyID == "" {
		return JWTAuthority{}, fmt.Errorf("%w: JWT authority without a key ID", ErrInvalidContent)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return JWTAuthority{}, fmt.Errorf("%w: JWT authority %q: %v", ErrInvalidContent, keyID, err)
	}
	return JWTAuthority{KeyID: keyID, SPKI: der}, nil
}

// PublicKey parses the authority's key.
func (a JWTAuthority) PublicKey() (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(a.SPKI)
	if err != nil {
		return nil, fmt.Errorf("%w: JWT authority %q: %v", ErrInvalidContent, a.KeyID, err)
	}
	return pub, nil
}

// Content is what one bundle version publishes: the X.509 trust anchors
// (self-signed root certificates, DER) and the JWT-SVID keys. Build it with
// NewContent, which puts it in canonical order, so that equal sets of anchors
// and keys always marshal to the same bytes.
type Content struct {
	X509Authorities [][]byte       `json:"x509_authorities"`
	JWTAuthorities  []JWTAuthority `json:"jwt_authorities"`
}

// NewContent checks and canonicalises anchors and keys: every anchor must be
// a CA certificate, every JWT key must parse and have a unique kid;
// duplicates are dropped; anchors are ordered by notBefore (then DER bytes),
// keys by kid.
func NewContent(anchors []*x509.Certificate, jwt []JWTAuthority) (Content, error) {
	certs := slices.Clone(anchors)
	for _, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return Content{}, fmt.Errorf("%w: trust anchor %q is not a CA certificate", ErrInvalidContent, c.Subject)
		}
	}
	slices.SortFunc(certs, func(a, b *x509.Certificate) int {
		if c := a.NotBefore.Compare(b.NotBefore); c != 0 {
			return c
		}
		return bytes.Compare(a.Raw, b.Raw)
	})
	c := Content{X509Authorities: [][]byte{}, JWTAuthorities: []JWTAuthority{}}
	for i, cert := range certs {
		if i > 0 && bytes.Equal(cert.Raw, certs[i-1].Raw) {
			continue
		}
		c.X509Authorities = append(c.X509Authorities, cert.Raw)
	}
	keys := slices.Clone(jwt)
	slices.SortFunc(keys, func(a, b JWTAuthority) int {
		if a.KeyID != b.KeyID {
			if a.KeyID < b.KeyID {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.SPKI, b.SPKI)
	})
	for i, k := range keys {
		if _, err := k.PublicKey(); err != nil {
			return Content{}, err
		}
		if i > 0 && k.KeyID == keys[i-1].KeyID {
			if bytes.Equal(k.SPKI, keys[i-1].SPKI) {
				continue
			}
			return Content{}, fmt.Errorf("%w: two JWT authorities share the key ID %q", ErrInvalidContent, k.KeyID)
		}
		c.JWTAuthorities = append(c.JWTAuthorities, k)
	}
	return c, nil
}

// Marshal returns the canonical JSON form stored in bundle_versions.
func (c Content) Marshal() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic("bundle: marshalling content cannot fail: " + err.Error())
	}
	return b
}

// ParseContent parses stored content and checks it as NewContent does.
func ParseContent(b []byte) (Content, error) {
	var raw Content
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Content{}, fmt.Errorf("%w: %v", ErrInvalidContent, err)
	}
	certs, err := parseCerts(raw.X509Authorities)
	if err != nil {
		return Content{}, err
	}
	return NewContent(certs, raw.JWTAuthorities)
}

// Anchors parses the X.509 authorities.
func (c Content) Anchors() ([]*x509.Certificate, error) { return parseCerts(c.X509Authorities) }

// HasAnchor reports whether der is one of the X.509 authorities.
func (c Content) HasAnchor(der []byte) bool {
	return slices.ContainsFunc(c.X509Authorities, func(a []byte) bool { return bytes.Equal(a, der) })
}

func parseCerts(ders [][]byte) ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, 0, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: trust anchor %d: %v", ErrInvalidContent, i, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}
