package issuer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
)

// subjectKeyID is the leftmost 160 bits of the SHA-256 of the
// subjectPublicKey of the key's encoded SubjectPublicKeyInfo, for every
// key type, and refuses the keys crypto/x509 cannot encode (validate
// refuses them before).
func TestSubjectKeyIDOfTheEncodedKey(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]crypto.PublicKey{"RSA": rsaKey.Public(), "Ed25519": edPub}
	for _, c := range []elliptic.Curve{elliptic.P224(), elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[c.Params().Name] = k.Public()
	}
	for name, pub := range keys {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		var spki struct {
			Algorithm asn1.RawValue
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(der, &spki); err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256(spki.PublicKey.Bytes)
		got, err := subjectKeyID(pub)
		if err != nil || !bytes.Equal(got, want[:20]) {
			t.Errorf("%s: subjectKeyID = %x, %v; want %x", name, got, err, want[:20])
		}
	}
	for name, pub := range map[string]crypto.PublicKey{
		"P-256 point off the curve": offCurveP256(keys["P-256"].(*ecdsa.PublicKey)),
		"no key":                    nil,
	} {
		if _, err := subjectKeyID(pub); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: err = %v, want ErrInvalidRequest", name, err)
		}
	}
}

// offCurveP256 is k with its X coordinate moved off the curve: a key only
// its coordinates can make.
func offCurveP256(k *ecdsa.PublicKey) *ecdsa.PublicKey {
	//lint:ignore SA1019 an invalid key can only be built from its coordinates
	return &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).Add(k.X, big.NewInt(1)), Y: k.Y}
}
