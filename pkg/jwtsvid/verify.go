package jwtsvid

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultAlgorithms are the algorithms a Verifier accepts unless told
// otherwise: the asymmetric ones the SPIFFE JWT-SVID specification allows.
// none and the HMAC algorithms are never accepted, whatever Config says.
var DefaultAlgorithms = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// Limits.
const (
	DefaultLeeway = 30 * time.Second
	MaxLeeway     = 5 * time.Minute
	// MaxTokenBytes bounds the tokens Verify parses at all.
	MaxTokenBytes = 16 << 10
)

// Config configures a Verifier. TrustDomain and Source are required.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Source      Source
	// Algorithms narrows DefaultAlgorithms; names outside it are refused.
	Algorithms []string
	// Leeway is the clock skew tolerated on exp, nbf and iat (default 30s,
	// at most 5m).
	Leeway time.Duration
	Clock  Clock
}

// Verifier checks JWT-SVIDs. Safe for concurrent use.
type Verifier struct {
	cfg  Config
	algs map[string]bool
}

// NewVerifier checks cfg and fills defaults.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("jwtsvid: Config.TrustDomain is required")
	}
	if cfg.Source == nil {
		return nil, errors.New("jwtsvid: Config.Source is required")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Leeway < 0 || cfg.Leeway > MaxLeeway {
		return nil, fmt.Errorf("jwtsvid: Config.Leeway must be in [0, %s]", MaxLeeway)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = DefaultAlgorithms
	}
	algs := map[string]bool{}
	for _, a := range cfg.Algorithms {
		if !slices.Contains(DefaultAlgorithms, a) {
			return nil, fmt.Errorf("jwtsvid: algorithm %q cannot be allowed (allowed: %s)", a, strings.Join(DefaultAlgorithms, ", "))
		}
		algs[a] = true
	}
	return &Verifier{cfg: cfg, algs: algs}, nil
}

// SVID is a verified JWT-SVID.
type SVID struct {
	ID       spiffeid.ID
	Audience []string
	Expiry   time.Time
	IssuedAt time.Time // zero if the token has no iat
	KeyID    string
	JTI      string
	// Claims are all of the token's claims as decoded JSON.
	Claims map[string]any
}

// header is the JOSE header as far as Verify reads it.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// claims are the registered claims Verify checks.
type claims struct {
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ID        string           `json:"jti"`
}

// Verify checks token and returns the SVID it carries, or an *Error whose
// Reason says what failed, checked in this order: the token's shape and
// header (token_malformed), its alg against the allow-list
// (alg_not_allowed), its kid in the bundle (unknown_kid, after a refresh),
// the alg against the key's type (alg_not_allowed), the signature
// (token_bad_signature), the claims' presence and types (token_malformed),
// the subject's trust domain (wrong_trust_domain), exp (token_expired), nbf
// and iat (token_not_yet_valid), and that aud contains audience
// (token_wrong_audience). Only a verified signature's claims are looked at.
func (v *Verifier) Verify(ctx context.Context, token, audience string) (*SVID, error) {
	if audience == "" {
		return nil, errors.New("jwtsvid: Verify needs the expected audience")
	}
	if len(token) > MaxTokenBytes {
		return nil, fail(ReasonMalformed, fmt.Sprintf("token longer than %d bytes", MaxTokenBytes), nil)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fail(ReasonMalformed, "not a compact JWS (three dot-separated parts)", nil)
	}
	var h header
	if err := decodeSegment(parts[0], &h); err != nil {
		return nil, fail(ReasonMalformed, "the header does not decode", err)
	}
	switch {
	case len(h.Crit) > 0:
		return nil, fail(ReasonMalformed, "critical header parameters are not supported", nil)
	case h.Typ != "" && h.Typ != "JWT" && h.Typ != "JOSE":
		return nil, fail(ReasonMalformed, fmt.Sprintf("typ %q is neither JWT nor JOSE", h.Typ), nil)
	case !v.algs[h.Alg]:
		return nil, fail(ReasonAlgNotAllowed, fmt.Sprintf("alg %q is not allowed", clip(h.Alg)), nil)
	case h.Kid == "":
		return nil, fail(ReasonMalformed, "the header has no kid", nil)
	}
	pub, err := v.cfg.Source.JWTAuthority(ctx, h.Kid)
	if err != nil {
		return nil, err
	}
	if !algFitsKey(h.Alg, pub) {
		return nil, fail(ReasonAlgNotAllowed, fmt.Sprintf("alg %s does not fit the key %q", h.Alg, h.Kid), nil)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(h.Alg)})
	if err != nil {
		return nil, fail(ReasonMalformed, "not a valid JWS", err)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return nil, fail(ReasonBadSignature, fmt.Sprintf("the signature does not verify with key %q", h.Kid), nil)
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fail(ReasonMalformed, "the claims do not decode", err)
	}
	var all map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&all); err != nil {
		return nil, fail(ReasonMalformed, "the claims do not decode", err)
	}
	switch {
	case c.Subject == "":
		return nil, fail(ReasonMalformed, "the token has no sub", nil)
	case len(c.Audience) == 0:
		return nil, fail(ReasonMalformed, "the token has no aud", nil)
	case c.Expiry == nil:
		return nil, fail(ReasonMalformed, "the token has no exp", nil)
	}
	id, err := spiffeid.FromString(c.Subject)
	if err != nil {
		return nil, fail(ReasonMalformed, "sub is not a SPIFFE ID", err)
	}
	if !id.MemberOf(v.cfg.TrustDomain) {
		return nil, fail(ReasonWrongTrustDomain, fmt.Sprintf("sub is in trust domain %q, not %q", id.TrustDomain().Name(), v.cfg.TrustDomain.Name()), nil)
	}
	now := v.cfg.Clock.Now()
	if !now.Before(c.Expiry.Time().Add(v.cfg.Leeway)) {
		return nil, fail(ReasonExpired, fmt.Sprintf("expired at %s", c.Expiry.Time().UTC().Format(time.RFC3339)), nil)
	}
	if c.NotBefore != nil && now.Add(v.cfg.Leeway).Before(c.NotBefore.Time()) {
		return nil, fail(ReasonNotYetValid, fmt.Sprintf("not valid before %s", c.NotBefore.Time().UTC().Format(time.RFC3339)), nil)
	}
	if c.IssuedAt != nil && now.Add(v.cfg.Leeway).Before(c.IssuedAt.Time()) {
		return nil, fail(ReasonNotYetValid, fmt.Sprintf("issued in the future, at %s", c.IssuedAt.Time().UTC().Format(time.RFC3339)), nil)
	}
	if !slices.Contains([]string(c.Audience), audience) {
		return nil, fail(ReasonWrongAudience, fmt.Sprintf("aud does not contain %q", clip(audience)), nil)
	}
	svid := &SVID{
		ID: id, Audience: []string(c.Audience), Expiry: c.Expiry.Time(), KeyID: h.Kid, JTI: c.ID, Claims: all,
	}
	if c.IssuedAt != nil {
		svid.IssuedAt = c.IssuedAt.Time()
	}
	return svid, nil
}

// algFitsKey tells whether alg is an algorithm of pub's type (and curve):
// a token cannot make an RSA key verify as ECDSA, nor the reverse.
func algFitsKey(alg string, pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	}
	return false
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// clip shortens attacker-controlled text before it goes into a message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
