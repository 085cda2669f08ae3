package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha256" // SHA-256 and SHA-384 for the JWS
	_ "crypto/sha512"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// AuthzPolicyJWSType is the typ header of the signed authorization policy.
const AuthzPolicyJWSType = "authz-policy+jwt"

// AuthzKeyStore is what the policy signer needs of the key store;
// hsm.KeyStore fits.
type AuthzKeyStore interface {
	Generate(ctx context.Context, name string, kt hsm.KeyType) (hsm.Key, error)
	Delete(ctx context.Context, uri string) error
}

// AuthzSignerConfig configures NewAuthzSigner. Keys, Issuer and TrustDomain
// are required.
type AuthzSignerConfig struct {
	Keys        AuthzKeyStore
	Issuer      LeafIssuer
	TrustDomain string
	// Lifetime asked for the signing certificate (24h when zero; the
	// issuer may shorten it). It is renewed once a third of it is left.
	Lifetime time.Duration
	// KeyType of the signing keys (default ecdsa-p256): ES256, ES384 or
	// RS256 JWS. `ca serve` passes issuer.key_type, so that a token without
	// elliptic curves can sign the policy too.
	KeyType hsm.KeyType
	Clock   clock.Clock
	Log     *slog.Logger
}

// AuthzSigner signs GET /v1/authz/policy answers as compact JWS (ES256,
// ES384 or RS256 by AuthzSignerConfig.KeyType) with a key generated in the
// key store, whose certificate for
// spiffe://<td>/ca/authz-policy the active intermediate issues (recorded
// and audited like every certificate). The key and certificate are made on
// first need and renewed before expiry; the replaced key is deleted from
// the key store at the next renewal (a signature may still be in flight).
type AuthzSigner struct {
	cfg AuthzSignerConfig

	mu       sync.Mutex
	cur      *authzSigningKey
	previous string // key URI to delete at the next renewal
}

type authzSigningKey struct {
	key      hsm.Key
	x5c      []string
	notAfter time.Time
	renewAt  time.Time
}

// NewAuthzSigner checks cfg.
func NewAuthzSigner(cfg AuthzSignerConfig) (*AuthzSigner, error) {
	if cfg.Keys == nil || cfg.Issuer == nil || cfg.TrustDomain == "" {
		return nil, fmt.Errorf("%w: AuthzSignerConfig needs Keys, Issuer and TrustDomain", ErrMissingDependency)
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = 24 * time.Hour
	}
	if cfg.KeyType == "" {
		cfg.KeyType = hsm.ECDSAP256
	}
	if !cfg.KeyType.Valid() {
		return nil, fmt.Errorf("%w: %q", hsm.ErrBadKeyType, cfg.KeyType)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &AuthzSigner{cfg: cfg}, nil
}

// current returns the signing key, issuing a new one when there is none or
// it is due for renewal.
func (s *AuthzSigner) current(ctx context.Context) (*authzSigningKey, error) {
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && now.Before(s.cur.renewAt) {
		return s.cur, nil
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("authz-policy-%s-%s", now.UTC().Format("20060102"), hex.EncodeToString(b[:]))
	key, err := s.cfg.Keys.Generate(ctx, name, s.cfg.KeyType)
	if err != nil {
		if s.cur != nil && now.Before(s.cur.notAfter) {
			s.cfg.Log.WarnContext(ctx, "renewing the authorization-policy signing key failed; the current one stays until it expires", "err", err)
			return s.cur, nil
		}
		return nil, fmt.Errorf("generating the authorization-policy signing key: %w", err)
	}
	got, err := s.cfg.Issuer.Issue(ctx, issuer.Request{
		PublicKey: key.Signer.Public(), SPIFFEID: issuer.AuthzPolicySPIFFEID(s.cfg.TrustDomain), TTL: s.cfg.Lifetime,
		Actor: "ca serve", Action: "issue", Provenance: []byte(`{"kind":"ca_authz_policy_signing"}`),
		CAAuthzPolicy: true,
	})
	if err != nil {
		_ = s.cfg.Keys.Delete(context.WithoutCancel(ctx), key.URI)
		if s.cur != nil && now.Before(s.cur.notAfter) {
			s.cfg.Log.WarnContext(ctx, "renewing the authorization-policy signing certificate failed; the current one stays until it expires", "err", err)
			return s.cur, nil
		}
		return nil, fmt.Errorf("issuing the authorization-policy signing certificate: %w", err)
	}
	x5c := []string{base64.StdEncoding.EncodeToString(got.DER)}
	for _, c := range got.Chain {
		x5c = append(x5c, base64.StdEncoding.EncodeToString(c))
	}
	life := got.NotAfter.Sub(now)
	next := &authzSigningKey{key: key, x5c: x5c, notAfter: got.NotAfter, renewAt: got.NotAfter.Add(-life / 3)}
	if s.previous != "" {
		if err := s.cfg.Keys.Delete(context.WithoutCancel(ctx), s.previous); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			s.cfg.Log.WarnContext(ctx, "deleting a replaced authorization-policy signing key failed", "key", s.previous, "err", err)
		}
		s.previous = ""
	}
	if s.cur != nil {
		s.previous = s.cur.key.URI
	}
	s.cur = next
	s.cfg.Log.InfoContext(ctx, "authorization-policy signing certificate issued", "serial", got.Serial, "not_after", got.NotAfter)
	return next, nil
}

// SignAuthzPolicy returns payload as a compact JWS: header {"alg":"ES256"
// (ES384 for a P-384 key, RS256 for an RSA key), "typ":"authz-policy+jwt",
// "x5c":[leaf, intermediates...]}.
func (s *AuthzSigner) SignAuthzPolicy(ctx context.Context, payload []byte) (string, error) {
	k, err := s.current(ctx)
	if err != nil {
		return "", err
	}
	alg, h, size := "ES256", crypto.SHA256, 32
	switch pub := k.key.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve.Params().BitSize == 384 {
			alg, h, size = "ES384", crypto.SHA384, 48
		}
	case *rsa.PublicKey:
		alg, size = "RS256", 0
	default:
		return "", fmt.Errorf("signing the authorization policy: unsupported key %T", pub)
	}
	hdr, err := json.Marshal(map[string]any{"alg": alg, "typ": AuthzPolicyJWSType, "x5c": k.x5c})
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload)
	hh := h.New()
	hh.Write([]byte(input))
	sig, err := hsm.WithContext(ctx, k.key.Signer).Sign(rand.Reader, hh.Sum(nil), h)
	if err != nil {
		return "", fmt.Errorf("signing the authorization policy: %w", err)
	}
	if size > 0 {
		// JWS wants ECDSA's r||s, not the ASN.1 the signer returns.
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(sig, &rs); err != nil {
			return "", fmt.Errorf("signing the authorization policy: unexpected signature encoding: %w", err)
		}
		raw := make([]byte, 2*size)
		rs.R.FillBytes(raw[:size])
		rs.S.FillBytes(raw[size:])
		sig = raw
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Close deletes this process's signing keys from the key store (their
// certificates stay recorded and simply expire): each process makes its own
// on first need, so nothing else uses them. `ca serve` calls it at shutdown.
func (s *AuthzSigner) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, uri := range []string{s.previous, func() string {
		if s.cur != nil {
			return s.cur.key.URI
		}
		return ""
	}()} {
		if uri == "" {
			continue
		}
		if err := s.cfg.Keys.Delete(ctx, uri); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
			errs = append(errs, err)
		}
	}
	s.cur, s.previous = nil, ""
	return errors.Join(errs...)
}
