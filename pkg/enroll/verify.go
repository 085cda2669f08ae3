package enroll

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/policy"
)

// AllowedAlgorithms are the only JWS algorithms accepted: asymmetric
// signatures. `none` and every HMAC algorithm are refused before any key is
// looked up, so a token can never pick a symmetric check of a public key.
var AllowedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Limits bound token verification. DefaultLimits gives the values used when
// a field is zero.
type Limits struct {
	// MaxTokenBytes is the largest token accepted; larger ones are refused
	// (token_malformed) before any parsing. Default 16 KiB.
	MaxTokenBytes int
	// Leeway is the clock skew tolerated on exp, nbf and iat unless the token
	// issuer's policy sets its own. Default 30s: CI runners and cluster nodes
	// keep NTP time, and every second of leeway lengthens a stolen token's life.
	Leeway time.Duration
	// MaxTokenAge refuses tokens issued (iat) longer ago than this, whatever
	// their exp says, unless the token issuer's policy sets its own. Default
	// 1h. Tokens without iat are refused while a maximum age applies.
	MaxTokenAge time.Duration
	// JWKSRefreshInterval is how long fetched keys are used before a refresh
	// is attempted. Default 15m.
	JWKSRefreshInterval time.Duration
	// JWKSMinRefreshInterval is the least time between two fetches of one
	// issuer's keys, whatever unknown kids tokens present. Default 1m.
	JWKSMinRefreshInterval time.Duration
	// JWKSMaxStale is how long after the last successful fetch cached keys
	// still verify while the issuer cannot be reached. Default 24h.
	JWKSMaxStale time.Duration
	// FetchTimeout bounds one discovery or JWKS fetch. Default 10s.
	FetchTimeout time.Duration
}

// DefaultLimits returns the defaults documented on Limits.
func DefaultLimits() Limits {
	return Limits{
		MaxTokenBytes:          16 << 10,
		Leeway:                 30 * time.Second,
		MaxTokenAge:            time.Hour,
		JWKSRefreshInterval:    15 * time.Minute,
		JWKSMinRefreshInterval: time.Minute,
		JWKSMaxStale:           24 * time.Hour,
		FetchTimeout:           10 * time.Second,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	pick := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if l.MaxTokenBytes <= 0 {
		l.MaxTokenBytes = d.MaxTokenBytes
	}
	pick(&l.Leeway, d.Leeway)
	pick(&l.MaxTokenAge, d.MaxTokenAge)
	pick(&l.JWKSRefreshInterval, d.JWKSRefreshInterval)
	pick(&l.JWKSMinRefreshInterval, d.JWKSMinRefreshInterval)
	pick(&l.JWKSMaxStale, d.JWKSMaxStale)
	pick(&l.FetchTimeout, d.FetchTimeout)
	return l
}

// Token is a verified provenance token.
type Token struct {
	IssuerName string // the token issuer's name in the policy
	Issuer     string // iss
	Subject    string // sub
	Audience   []string
	ID         string // jti, "" if absent
	IssuedAt   time.Time
	Expiry     time.Time
	KeyID      string
	Algorithm  string
	// Claims are all the token's claims as decoded from JSON (numbers are
	// float64), for policy evaluation and provenance.
	Claims map[string]any
	// ReplayKey identifies the token for replay protection: a hash of the
	// issuer and jti, or, when it has no jti, of the issuer and the decoded
	// header and payload the signature covers (so that re-encoding the token
	// does not make it new; see replayKey).
	ReplayKey string
	// ReplayUntil is how long the replay record must be kept: exp plus leeway.
	ReplayUntil time.Time
}

// Verifier verifies provenance and operator tokens against the token issuers
// of a policy, caching each issuer's keys. It is safe for concurrent use and
// meant to live as long as the process; a policy reload that changes an
// issuer's key source simply starts a new cache for it.
type Verifier struct {
	clock  clock.Clock
	client *http.Client
	lim    Limits
	log    *slog.Logger

	mu      sync.Mutex
	sources map[policy.TokenIssuer]*keySource
}

// VerifierOption configures NewVerifier.
type VerifierOption func(*Verifier)

// WithHTTPClient sets the client used for discovery and JWKS fetches (default:
// a client with Limits.FetchTimeout).
func WithHTTPClient(c *http.Client) VerifierOption { return func(v *Verifier) { v.client = c } }

// WithLimits overrides the defaults; zero fields keep their default.
func WithLimits(l Limits) VerifierOption { return func(v *Verifier) { v.lim = l } }

// WithLogger sets the logger for key-refresh warnings (default slog.Default()).
func WithLogger(l *slog.Logger) VerifierOption { return func(v *Verifier) { v.log = l } }

// NewVerifier returns a Verifier reading time from c.
func NewVerifier(c clock.Clock, opts ...VerifierOption) *Verifier {
	v := &Verifier{clock: c, sources: map[policy.TokenIssuer]*keySource{}}
	for _, o := range opts {
		o(v)
	}
	v.lim = v.lim.withDefaults()
	if v.client == nil {
		v.client = &http.Client{Timeout: v.lim.FetchTimeout}
	}
	if v.log == nil {
		v.log = slog.Default()
	}
	return v
}

func (v *Verifier) source(is policy.TokenIssuer) *keySource {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.sources[is]
	if !ok {
		s = &keySource{iss: is, client: v.client, lim: v.lim, clock: v.clock, log: v.log}
		v.sources[is] = s
	}
	return s
}

// Verify checks raw against the token issuers of pol, in this order: size,
// syntax and algorithm allow-list, issuer (by iss), signature (by kid against
// the issuer's cached JWKS), exp/nbf/iat with leeway, maximum age, audience.
// It returns a *Error whose Reason is one of the token_* codes (or
// token_issuer_unavailable); no error message contains the token.
func (v *Verifier) Verify(ctx context.Context, pol *policy.Policy, raw string) (*Token, error) {
	if len(raw) > v.lim.MaxTokenBytes {
		return nil, newErr(ReasonTokenMalformed, nil, "token larger than %d bytes", v.lim.MaxTokenBytes)
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, newErr(ReasonTokenMalformed, nil, "empty token")
	}
	tok, err := jwt.ParseSigned(raw, AllowedAlgorithms)
	if err != nil {
		if alg, ok := headerAlg(raw); ok && !slices.Contains(AllowedAlgorithms, jose.SignatureAlgorithm(alg)) {
			return nil, newErr(ReasonTokenBadSignature, err, "signature algorithm %s is not allowed", quote(alg))
		}
		return nil, newErr(ReasonTokenMalformed, err, "not a compact JWS")
	}
	if len(tok.Headers) != 1 {
		return nil, newErr(ReasonTokenMalformed, nil, "token must carry exactly one signature")
	}
	hdr := tok.Headers[0]
	// The payload is decoded once, into the map the policy and the
	// provenance read (claimsOf).
	var payload any
	if err := tok.UnsafeClaimsWithoutVerification(&payload); err != nil {
		return nil, newErr(ReasonTokenMalformed, err, "claims are not a valid JWT claims set")
	}
	claims, reg, err := claimsOf(payload)
	if err != nil {
		return nil, err
	}
	if reg.Issuer == "" {
		return nil, newErr(ReasonTokenMalformed, nil, "token has no iss")
	}
	is, ok := pol.IssuerByURL(reg.Issuer)
	if !ok {
		return nil, newErr(ReasonTokenUnknownIssuer, nil, "issuer %s is not trusted", quote(reg.Issuer))
	}
	fail := func(reason string, err error, format string, args ...any) (*Token, error) {
		e := newErr(reason, err, format, args...)
		e.Issuer = is.Name
		return nil, e
	}

	keys, err := v.source(is).keysFor(ctx, hdr.KeyID)
	switch {
	case errors.Is(err, errUnknownKID):
		return fail(ReasonTokenBadSignature, err, "no trusted key with kid %s", quote(hdr.KeyID))
	case err != nil:
		return fail(ReasonTokenIssuerUnavailable, err, "keys of token issuer %q are unavailable", is.Name)
	}
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		if err := tok.Claims(k.Key); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return fail(ReasonTokenBadSignature, nil, "signature does not verify with the issuer's keys")
	}

	// From here on the claims are authentic.
	leeway, maxAge := v.lim.Leeway, v.lim.MaxTokenAge
	if is.Leeway > 0 {
		leeway = is.Leeway
	}
	if is.MaxTokenAge > 0 {
		maxAge = is.MaxTokenAge
	}
	now := v.clock.Now()
	t := &Token{
		IssuerName: is.Name, Issuer: reg.Issuer, Subject: reg.Subject, Audience: reg.Audience,
		ID: reg.ID, KeyID: hdr.KeyID, Algorithm: hdr.Algorithm, Claims: claims,
	}
	failV := func(reason, format string, args ...any) (*Token, error) {
		e := newErr(reason, nil, format, args...)
		e.Issuer, e.Subject = is.Name, t.Subject
		return nil, e
	}
	if reg.Expiry == nil {
		return failV(ReasonTokenMalformed, "token has no exp")
	}
	t.Expiry = reg.Expiry.Time()
	if now.After(t.Expiry.Add(leeway)) {
		return failV(ReasonTokenExpired, "token expired at %s", t.Expiry.UTC().Format(time.RFC3339))
	}
	if reg.NotBefore != nil && now.Add(leeway).Before(reg.NotBefore.Time()) {
		return failV(ReasonTokenNotYetValid, "token not valid before %s", reg.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	if reg.IssuedAt != nil {
		t.IssuedAt = reg.IssuedAt.Time()
		if now.Add(leeway).Before(t.IssuedAt) {
			return failV(ReasonTokenNotYetValid, "token issued in the future (%s)", t.IssuedAt.UTC().Format(time.RFC3339))
		}
	}
	if maxAge > 0 {
		if reg.IssuedAt == nil {
			return failV(ReasonTokenMalformed, "token has no iat")
		}
		if now.Sub(t.IssuedAt) > maxAge+leeway {
			return failV(ReasonTokenExpired, "token older than the maximum age of %s", maxAge)
		}
	}
	if !slices.Contains([]string(reg.Audience), is.Audience) {
		return failV(ReasonTokenWrongAudience, "token audience does not include %s", quote(is.Audience))
	}
	if is.RequireJTI && reg.ID == "" {
		return failV(ReasonTokenMalformed, "token has no jti, which token issuer %q requires", is.Name)
	}
	t.ReplayKey = replayKey(reg.Issuer, reg.ID, raw)
	t.ReplayUntil = t.Expiry.Add(leeway)
	if t.ReplayUntil.After(maxReplayUntil) {
		t.ReplayUntil = maxReplayUntil
	}
	return t, nil
}

// maxReplayUntil bounds how long a replay mark is kept to what both stores
// can hold (Postgres timestamptz; SQLite's microseconds in an int64): a
// token whose exp lies beyond it stays marked until then, that is for good.
// Without the bound, an exp near maxNumericDate overflowed on its way into
// the store and wrapped to a past time, so its mark was an expired leftover
// at once and the token could be used again.
var maxReplayUntil = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// claimsOf returns the claims of a payload go-jose decoded into an any, and
// its registered claims, or the token_malformed refusal of a payload that is
// not a JSON object or whose registered claims have the wrong types.
//
// Decoding into an any takes go-jose's decoder's path without reflection
// (into a map[string]any it reflects on every claim), with the same checks
// (duplicate names are refused); the registered claims are taken from the
// map (registeredClaims) instead of from a second decoding into
// jwt.Claims. The answers are those of the two decodings it replaces
// (jwt.Claims, then map[string]any; TestRegisteredClaimsMatchJWTClaims).
func claimsOf(payload any) (map[string]any, jwt.Claims, error) {
	claims, ok := payload.(map[string]any)
	switch {
	case payload == nil:
		return nil, jwt.Claims{}, newErr(ReasonTokenMalformed, nil, "claims are not a JSON object")
	case !ok: // a map[string]any target refuses any other JSON value
		return nil, jwt.Claims{}, newErr(ReasonTokenMalformed, nil, "claims are not a valid JWT claims set")
	}
	reg, err := registeredClaims(claims)
	if err != nil {
		return nil, jwt.Claims{}, newErr(ReasonTokenMalformed, err, "claims are not a valid JWT claims set")
	}
	return claims, reg, nil
}

// registeredClaims returns the registered claims of a payload decoded into
// claims, as go-jose's json.Unmarshal of the same payload into jwt.Claims
// returns them, and an error exactly when that decoding fails (the payload
// being a JSON object that decodes into a map): iss, sub and jti are
// strings (null or absent: ""); aud is a string or an array of strings
// (absent: none; null or anything else is an error); exp, nbf and iat are
// numbers below 2^62 in magnitude (null or absent: none). Both decodings
// match names case-sensitively and refuse duplicate names alike.
// TestRegisteredClaimsMatchJWTClaims holds the two to the same answers.
func registeredClaims(claims map[string]any) (jwt.Claims, error) {
	var reg jwt.Claims
	var err error
	str := func(name string, dst *string) {
		switch v := claims[name].(type) {
		case nil:
		case string:
			*dst = v
		default:
			err = errRegisteredClaim
		}
	}
	date := func(name string) *jwt.NumericDate {
		switch v := claims[name].(type) {
		case nil:
		case float64:
			if v < maxNumericDate && v > -maxNumericDate {
				d := jwt.NumericDate(v)
				return &d
			}
			err = errRegisteredClaim
		default:
			err = errRegisteredClaim
		}
		return nil
	}
	str("iss", &reg.Issuer)
	str("sub", &reg.Subject)
	str("jti", &reg.ID)
	reg.Expiry, reg.NotBefore, reg.IssuedAt = date("exp"), date("nbf"), date("iat")
	if aud, ok := claims["aud"]; ok {
		switch v := aud.(type) {
		case string:
			reg.Audience = jwt.Audience{v}
		case []any:
			reg.Audience = make(jwt.Audience, len(v))
			for i, e := range v {
				s, ok := e.(string)
				if !ok {
					return jwt.Claims{}, errRegisteredClaim
				}
				reg.Audience[i] = s
			}
		default:
			err = errRegisteredClaim
		}
	}
	if err != nil {
		return jwt.Claims{}, err
	}
	return reg, nil
}

// maxNumericDate is go-jose's bound on exp, nbf and iat: beyond it the
// conversion to a time overflows.
const maxNumericDate = 1 << 62

// errRegisteredClaim is a registered claim of the wrong JSON type.
var errRegisteredClaim = errors.New("a registered claim (iss, sub, aud, exp, nbf, iat, jti) has the wrong type")

// headerAlg reads only the `alg` of a token's protected header, to tell a
// refused algorithm (token_bad_signature) from garbage (token_malformed) after
// go-jose has already refused the token. It is never used to verify anything.
func headerAlg(raw string) (string, bool) {
	h, _, ok := strings.Cut(raw, ".")
	if !ok || len(h) > 4096 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return "", false
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil || hdr.Alg == "" {
		return "", false
	}
	return hdr.Alg, true
}

// replayKey namespaces the token's identity by issuer: the jti when there is
// one, else what the issuer signed. It is a fixed-length hex SHA-256 so that
// no token content is stored.
//
// Without a jti the key is not the token's text: one signed token has many
// encodings that verify -- another valid signature over the same input
// (ECDSA's (r, n-s)), other values of the unused low bits of a base64url
// segment's last character (the decoder ignores them, and go-jose verifies
// over its own re-encoding of the header and payload) -- and each would
// otherwise be a fresh token. The key is the decoded protected header and
// payload instead, which every such encoding shares and no re-encoding can
// change without a new signature from the issuer.
func replayKey(iss, jti, raw string) string {
	if jti != "" {
		// Hashed from a stack buffer: this runs for every token.
		var buf [256]byte
		b := append(append(append(append(buf[:0], "jti\x00"...), iss...), 0), jti...)
		sum := sha256.Sum256(b)
		return hex.EncodeToString(sum[:])
	}
	h := sha256.New()
	h.Write([]byte("signed\x00" + iss + "\x00"))
	header, rest, _ := strings.Cut(raw, ".")
	payload, _, _ := strings.Cut(rest, ".")
	for _, seg := range []string{header, payload} {
		b, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil {
			b = []byte(seg) // not for a token go-jose accepted; kept total anyway
		}
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}
