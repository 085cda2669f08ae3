package workloadapi

import (
	"crypto/ecdsa"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// signJWT makes a JWT-SVID as the CA would.
func signJWT(key *ecdsa.PrivateKey, kid, sub string, aud []string, now time.Time, ttl time.Duration) (string, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return "", err
	}
	return jwt.Signed(s).Claims(jwt.Claims{Subject: sub, Audience: aud, IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(ttl))}).Serialize()
}
