package testkit

import (
	"crypto/elliptic"
	"encoding/base64"
	"math/big"
	"strings"
)

// Re-encodings of a compact JWS that still verify: what an attacker holding
// one token can make of it without the issuer's key. Replay protection must
// treat every one of them as the same token.

// HighS returns token with its ES256, ES384 or ES512 signature (r, s)
// replaced by (r, n-s), which verifies just as well, and true; or token and
// false when the signature is not an ECDSA one of those sizes.
func HighS(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return token, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return token, false
	}
	var curve elliptic.Curve
	switch len(sig) {
	case 64:
		curve = elliptic.P256()
	case 96:
		curve = elliptic.P384()
	case 132:
		curve = elliptic.P521()
	default:
		return token, false
	}
	half := len(sig) / 2
	s := new(big.Int).SetBytes(sig[half:])
	s.Sub(curve.Params().N, s)
	out := append([]byte{}, sig[:half]...)
	out = append(out, s.FillBytes(make([]byte, half))...)
	parts[2] = base64.RawURLEncoding.EncodeToString(out)
	return strings.Join(parts, "."), true
}

// OtherUnusedBits returns token with segment i (0 header, 1 payload, 2
// signature) re-encoded with other values in the unused low bits of its last
// base64url character, which a lenient decoder ignores, and true; or token
// and false when that segment has no unused bits (its length is a multiple
// of 3 bytes).
func OtherUnusedBits(token string, i int) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || i < 0 || i > 2 || len(parts[i]) == 0 {
		return token, false
	}
	seg := parts[i]
	want, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return token, false
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, c := range alphabet {
		alt := seg[:len(seg)-1] + string(c)
		if alt == seg {
			continue
		}
		if got, err := base64.RawURLEncoding.DecodeString(alt); err == nil && string(got) == string(want) {
			parts[i] = alt
			return strings.Join(parts, "."), true
		}
	}
	return token, false
}
