package jwtkeys

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// ActionJWT is the audit action of a JWT-SVID issuance.
const ActionJWT = "jwt"

// Request limits.
const (
	MaxAudiences      = 16
	MaxAudienceLength = 512
)

// SignerStore is what signing needs from persistence; store.Store satisfies
// it.
type SignerStore interface {
	ListJWTKeys(ctx context.Context) ([]store.JWTKey, error)
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

// KeyFinder finds a key by URI; both key stores satisfy it.
type KeyFinder interface {
	Find(ctx context.Context, uri string) (hsm.Key, error)
}

// SignerDeps are the Signer's collaborators. Keys and Store are required; a
// nil Clock is clock.Real{}, a nil Log discards.
type SignerDeps struct {
	Keys  KeyFinder
	Store SignerStore
	Clock clock.Clock
	Log   *slog.Logger
	// Health records whether the active key could sign when last used,
	// for KeyReady (nil: a private one).
	Health *hsm.KeyHealth
}

// Signer signs JWT-SVIDs with the active key. It caches which key is active
// for Config.Recheck, so a rotation on another replica reaches it within
// that time (Config.Grace covers it). Safe for concurrent use.
type Signer struct {
	d   SignerDeps
	cfg Config

	mu       sync.Mutex
	cur      *activeKey
	loadedAt time.Time
}

// activeKey is the active key's record and its signer.
type activeKey struct {
	rec    store.JWTKey
	pub    crypto.PublicKey
	signer crypto.Signer
}

// NewSigner checks d and fills and validates cfg (only MaxTTL and Recheck
// matter to the signer; pass the Manager's Config).
func NewSigner(d SignerDeps, cfg Config) (*Signer, error) {
	switch {
	case d.Keys == nil:
		return nil, errors.New("jwtkeys: SignerDeps.Keys is required")
	case d.Store == nil:
		return nil, errors.New("jwtkeys: SignerDeps.Store is required")
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Health == nil {
		d.Health = &hsm.KeyHealth{Clock: d.Clock}
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Signer{d: d, cfg: cfg}, nil
}

// MaxTTL is the longest lifetime Sign accepts.
func (s *Signer) MaxTTL() time.Duration { return s.cfg.MaxTTL }

// Request is an already-authorised JWT-SVID request: the caller has
// established the SPIFFE ID (from a verified, current certificate) and
// applied policy to the audiences and lifetime.
type Request struct {
	SPIFFEID string
	Audience []string
	TTL      time.Duration
	// NotAfter, when set, is the notAfter of the certificate that authorised
	// the request: the token expires no later than it (whole seconds, rounded
	// down), whatever TTL says, and a certificate that expires within the
	// second is ErrInvalidRequest.
	NotAfter time.Time
	// RequestID and PolicyVersion go into the audit entry.
	RequestID, PolicyVersion string
}

// Token is a signed, recorded JWT-SVID.
type Token struct {
	// Token is the compact JWS.
	Token    string
	KeyID    string
	Alg      string
	JTI      string
	SPIFFEID string
	Audience []string
	IssuedAt time.Time
	Expiry   time.Time
}

// Sign builds a JWT-SVID for r (sub, aud, exp, iat, jti; header alg, kid,
// typ JWT), signs it with the active key in the key store, checks the
// signature, and records it in the audit log (action jwt, actor the SPIFFE
// ID, with audiences, jti and kid) before returning it: a token whose record
// failed is never returned. ErrInvalidRequest or ErrTTLTooLong before
// anything is signed; ErrNoActiveKey before the first key exists.
func (s *Signer) Sign(ctx context.Context, r Request) (*Token, error) {
	if err := s.check(r); err != nil {
		return nil, err
	}
	key, err := s.active(ctx)
	if err != nil {
		s.d.Health.Record(err)
		return nil, err
	}
	now := s.d.Clock.Now().Truncate(time.Second)
	jti, err := newJTI()
	if err != nil {
		return nil, err
	}
	exp := now.Add(r.TTL)
	capped := false
	if !r.NotAfter.IsZero() {
		if limit := r.NotAfter.Truncate(time.Second); limit.Before(exp) {
			exp, capped = limit, true
		}
		if !exp.After(now) {
			return nil, fmt.Errorf("%w: the authorising certificate expires within the second", ErrInvalidRequest)
		}
	}
	claims := jwt.Claims{
		Subject:  r.SPIFFEID,
		Audience: jwt.Audience(r.Audience),
		Expiry:   jwt.NewNumericDate(exp),
		IssuedAt: jwt.NewNumericDate(now),
		ID:       jti,
	}
	compact, err := signCompact(hsm.WithContext(ctx, key.signer), key.rec.Alg, key.rec.KeyID, claims)
	s.d.Health.Record(err)
	if err != nil {
		return nil, err
	}
	// The key store signed what we asked: check it before anyone sees it.
	if err := verifyCompact(compact, key.rec.Alg, key.pub); err != nil {
		return nil, fmt.Errorf("jwtkeys: the key store's signature does not verify with key %s: %w", key.rec.KeyID, err)
	}
	details, _ := json.Marshal(map[string]any{
		"audience": r.Audience, "jti": jti, "kid": key.rec.KeyID, "alg": key.rec.Alg,
		"expires_at": exp.UTC(), "ttl": r.TTL.String(), "capped_by_certificate": capped,
	})
	if _, err := s.d.Store.AppendAudit(ctx, store.AuditEntry{
		Time: now, Actor: r.SPIFFEID, Action: ActionJWT, Target: "jwt/" + jti, Decision: "allow",
		PolicyVersion: r.PolicyVersion, RequestID: r.RequestID, Details: details,
	}); err != nil {
		return nil, fmt.Errorf("jwtkeys: recording the JWT-SVID (not returned): %w", err)
	}
	return &Token{
		Token: compact, KeyID: key.rec.KeyID, Alg: key.rec.Alg, JTI: jti, SPIFFEID: r.SPIFFEID,
		Audience: append([]string(nil), r.Audience...), IssuedAt: now, Expiry: exp,
	}, nil
}

func (s *Signer) check(r Request) error {
	id, err := spiffeid.FromString(r.SPIFFEID)
	if err != nil || id.Path() == "" {
		return fmt.Errorf("%w: subject %q is not a workload SPIFFE ID", ErrInvalidRequest, r.SPIFFEID)
	}
	if len(r.Audience) == 0 || len(r.Audience) > MaxAudiences {
		return fmt.Errorf("%w: 1 to %d audiences are required", ErrInvalidRequest, MaxAudiences)
	}
	for _, a := range r.Audience {
		if a == "" || len(a) > MaxAudienceLength {
			return fmt.Errorf("%w: audiences must be 1 to %d bytes", ErrInvalidRequest, MaxAudienceLength)
		}
	}
	switch {
	case r.TTL <= 0:
		return fmt.Errorf("%w: the lifetime must be positive", ErrInvalidRequest)
	case r.TTL < time.Second:
		return fmt.Errorf("%w: the lifetime must be at least 1s", ErrInvalidRequest)
	case r.TTL > s.cfg.MaxTTL:
		return fmt.Errorf("%w: %s > %s", ErrTTLTooLong, r.TTL, s.cfg.MaxTTL)
	}
	return nil
}

// KeyReady reports whether a JWT-SVID could be signed now, without signing:
// an active key exists and is found in the key store (ErrNoActiveKey, or the
// key store's error), and it did not fail to sign when last used (within
// hsm.DefaultKeyHealthWindow). /readyz calls it.
func (s *Signer) KeyReady(ctx context.Context) error {
	if _, err := s.active(ctx); err != nil {
		return err
	}
	if err := s.d.Health.Err(); err != nil {
		return fmt.Errorf("jwtkeys: the active key cannot sign: %w", err)
	}
	return nil
}

// active returns the active key, re-reading the store after Recheck.
func (s *Signer) active(ctx context.Context) (*activeKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.d.Clock.Now()
	if s.cur != nil && now.Sub(s.loadedAt) < s.cfg.Recheck && !now.Before(s.loadedAt) {
		return s.cur, nil
	}
	keys, err := s.d.Store.ListJWTKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("jwtkeys: reading the active key: %w", err)
	}
	rec := find(keys, store.JWTKeyActive)
	if rec == nil {
		return nil, ErrNoActiveKey
	}
	if s.cur != nil && s.cur.rec.KeyID == rec.KeyID {
		s.loadedAt = now
		return s.cur, nil
	}
	pub, err := PublicKey(*rec)
	if err != nil {
		return nil, err
	}
	k, err := s.d.Keys.Find(ctx, rec.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("jwtkeys: finding key %s: %w", rec.KeyID, err)
	}
	if kid, err := Thumbprint(k.Signer.Public()); err != nil || kid != rec.KeyID {
		return nil, fmt.Errorf("%w: %s", ErrKeyMismatch, rec.KeyID)
	}
	if s.cur != nil {
		s.d.Log.InfoContext(ctx, "JWT signing key changed", "kid", rec.KeyID, "previous", s.cur.rec.KeyID)
	}
	s.cur, s.loadedAt = &activeKey{rec: *rec, pub: pub, signer: k.Signer}, now
	return s.cur, nil
}

func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("jwtkeys: jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// signCompact encodes header and claims and signs the JWS signing input
// with signer. ECDSA signatures come from crypto.Signer as ASN.1 DER and
// are converted to the fixed-size r||s form JWS requires (RFC 7518 3.4).
func signCompact(signer crypto.Signer, alg, kid string, claims jwt.Claims) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("jwtkeys: encoding claims: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	var hash crypto.Hash
	var digest []byte
	switch alg {
	case AlgES256, AlgRS256:
		h := sha256.Sum256([]byte(input))
		hash, digest = crypto.SHA256, h[:]
	case AlgES384:
		h := sha512.Sum384([]byte(input))
		hash, digest = crypto.SHA384, h[:]
	default:
		return "", fmt.Errorf("jwtkeys: unsupported algorithm %q", alg)
	}
	sig, err := signer.Sign(rand.Reader, digest, hash)
	if err != nil {
		return "", fmt.Errorf("jwtkeys: signing: %w", err)
	}
	switch alg {
	case AlgES256:
		sig, err = rawECDSA(sig, 32)
	case AlgES384:
		sig, err = rawECDSA(sig, 48)
	}
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// rawECDSA converts an ASN.1 ECDSA signature to r||s, each size bytes.
func rawECDSA(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R == nil || sig.S == nil || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 ||
		sig.R.BitLen() > 8*size || sig.S.BitLen() > 8*size {
		return nil, errors.New("jwtkeys: the key store returned a malformed ECDSA signature")
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}

func verifyCompact(token, alg string, pub crypto.PublicKey) error {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return err
	}
	_, err = jws.Verify(pub)
	return err
}
