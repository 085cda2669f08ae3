package jwtkeys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// JWS algorithms the signer uses, one per key type.
const (
	AlgES256 = "ES256"
	AlgES384 = "ES384"
	AlgRS256 = "RS256"
)

func algForKeyType(kt hsm.KeyType) (string, error) {
	switch kt {
	case hsm.ECDSAP256:
		return AlgES256, nil
	case hsm.ECDSAP384:
		return AlgES384, nil
	case hsm.RSA3072:
		return AlgRS256, nil
	}
	return "", fmt.Errorf("unsupported key type %q (ecdsa-p256, ecdsa-p384 or rsa-3072)", kt)
}

// algMatchesKey tells whether alg is the algorithm this package signs with
// for pub.
func algMatchesKey(alg string, pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return (alg == AlgES256 && k.Curve == elliptic.P256()) || (alg == AlgES384 && k.Curve == elliptic.P384())
	case *rsa.PublicKey:
		return alg == AlgRS256 && k.N.BitLen() >= 2048
	}
	return false
}

// Thumbprint is the RFC 7638 JWK thumbprint of pub (SHA-256, base64url
// without padding): the kid of a JWT-SVID signing key.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("jwtkeys: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// publicJWK is the JSON JWK recorded for a key.
func publicJWK(pub crypto.PublicKey, kid, alg string) ([]byte, error) {
	b, err := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"})
	if err != nil {
		return nil, fmt.Errorf("jwtkeys: encoding the public JWK: %w", err)
	}
	return b, nil
}

// PublicKey parses the public key of a recorded key and checks that the
// record is consistent: a public key, whose thumbprint is the kid, of the
// recorded algorithm.
func PublicKey(k store.JWTKey) (crypto.PublicKey, error) {
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(k.PublicJWK, &jwk); err != nil {
		return nil, fmt.Errorf("jwtkeys: key %q: public JWK: %w", k.KeyID, err)
	}
	if !jwk.IsPublic() {
		return nil, fmt.Errorf("jwtkeys: key %q: the recorded JWK is not a public key", k.KeyID)
	}
	tp, err := Thumbprint(jwk.Key)
	if err != nil {
		return nil, err
	}
	if tp != k.KeyID {
		return nil, fmt.Errorf("jwtkeys: key %q: recorded JWK has thumbprint %q", k.KeyID, tp)
	}
	if !algMatchesKey(k.Alg, jwk.Key) {
		return nil, fmt.Errorf("jwtkeys: key %q: algorithm %q does not fit its key", k.KeyID, k.Alg)
	}
	return jwk.Key, nil
}

// keyName is a fresh key store name for a JWT signing key.
func keyName(now time.Time) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("jwtkeys: key name: %w", err)
	}
	return "jwt-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:]), nil
}

// newKey generates a key in the key store and builds its record in state.
func newKey(ctx context.Context, ks KeyStore, kt hsm.KeyType, state store.JWTKeyState, now time.Time) (store.JWTKey, error) {
	alg, err := algForKeyType(kt)
	if err != nil {
		return store.JWTKey{}, err
	}
	name, err := keyName(now)
	if err != nil {
		return store.JWTKey{}, err
	}
	key, err := ks.Generate(ctx, name, kt)
	if err != nil {
		return store.JWTKey{}, fmt.Errorf("jwtkeys: generating a signing key: %w", err)
	}
	pub := key.Signer.Public()
	kid, err := Thumbprint(pub)
	if err != nil {
		return store.JWTKey{}, err
	}
	jwk, err := publicJWK(pub, kid, alg)
	if err != nil {
		return store.JWTKey{}, err
	}
	k := store.JWTKey{KeyID: kid, KeyURI: key.URI, Alg: alg, State: state, PublicJWK: jwk, CreatedAt: now}
	if state == store.JWTKeyActive {
		k.ActivatedAt = now
	}
	return k, nil
}

// KeyLister lists the recorded keys; store.Store satisfies it.
type KeyLister interface {
	ListJWTKeys(ctx context.Context) ([]store.JWTKey, error)
}

// Published is the bundle's source of JWT-SVID keys: every recorded key that
// is not retired (prepared, active and retiring). It reads the store on each
// call and holds no state.
type Published struct {
	st KeyLister
}

var _ bundle.JWTKeySource = (*Published)(nil)

// NewPublished returns the key source over st.
func NewPublished(st KeyLister) *Published { return &Published{st: st} }

// JWTAuthorities returns the keys to publish, by kid. A record whose public
// key does not parse is an error: publishing a bundle without a key that may
// be signing would break relying parties.
func (p *Published) JWTAuthorities(ctx context.Context) ([]bundle.JWTAuthority, error) {
	keys, err := p.st.ListJWTKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("jwtkeys: listing keys: %w", err)
	}
	var out []bundle.JWTAuthority
	for _, k := range keys {
		if k.State == store.JWTKeyRetired {
			continue
		}
		pub, err := PublicKey(k)
		if err != nil {
			return nil, err
		}
		a, err := bundle.NewJWTAuthority(k.KeyID, pub)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
