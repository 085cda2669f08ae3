package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/workload-ca/workload-ca/internal/clock"
)

// DefaultOIDCAudience is the audience NewOIDCIssuer puts in tokens unless told
// otherwise.
const DefaultOIDCAudience = "https://ca.example.org"

// OIDCIssuer is a test OIDC token issuer on a loopback HTTPS server: it serves
// a discovery document and a JWKS, mints GitHub-, GitLab- and Kubernetes-shaped
// tokens (and hostile ones), rotates keys, counts fetches, and can go down
// (503) and come back. Token times come from its Clock. Use Client() to talk
// to it: its certificate is httptest's.
type OIDCIssuer struct {
	// URL is the issuer URL, the `iss` of its tokens (https://127.0.0.1:port).
	URL string
	// Audience is put in tokens unless a claim override says otherwise.
	Audience string

	srv   *httptest.Server
	clock clock.Clock

	mu        sync.Mutex
	published []*oidcKey                           // in the JWKS
	signing   map[jose.SignatureAlgorithm]*oidcKey // current key per algorithm
	down      bool
	jwksHits  int
	discHits  int
	kidSerial int
}

type oidcKey struct {
	kid    string
	alg    jose.SignatureAlgorithm // "" for RSA keys, which sign RS* and PS*
	signer crypto.Signer
}

// OIDCOption configures NewOIDCIssuer.
type OIDCOption func(*OIDCIssuer)

// WithOIDCClock makes the issuer stamp tokens with c's time.
func WithOIDCClock(c clock.Clock) OIDCOption { return func(o *OIDCIssuer) { o.clock = c } }

// WithOIDCAudience sets the default audience of minted tokens.
func WithOIDCAudience(aud string) OIDCOption { return func(o *OIDCIssuer) { o.Audience = aud } }

// NewOIDCIssuer starts a test issuer with one ES256, ES384, EdDSA and RSA
// (RS*/PS*) key each, all published. It is closed with t.Cleanup.
func NewOIDCIssuer(t testing.TB, opts ...OIDCOption) *OIDCIssuer {
	t.Helper()
	o := &OIDCIssuer{Audience: DefaultOIDCAudience, clock: clock.Real{}, signing: map[jose.SignatureAlgorithm]*oidcKey{}}
	for _, opt := range opts {
		opt(o)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	o.addKey(jose.ES256, p256)
	o.addKey(jose.ES384, p384)
	o.addKey(jose.EdDSA, ed)
	rsaKey := o.addKey("", rk)
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512} {
		o.signing[alg] = rsaKey
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", o.serveDiscovery)
	mux.HandleFunc("GET /.well-known/jwks", o.serveJWKS)
	o.srv = httptest.NewTLSServer(mux)
	o.URL = o.srv.URL
	t.Cleanup(o.srv.Close)
	return o
}

func (o *OIDCIssuer) addKey(alg jose.SignatureAlgorithm, s crypto.Signer) *oidcKey {
	o.kidSerial++
	var b [4]byte
	_, _ = rand.Read(b[:])
	k := &oidcKey{kid: fmt.Sprintf("k%d-%s", o.kidSerial, hex.EncodeToString(b[:])), alg: alg, signer: s}
	o.published = append(o.published, k)
	if alg != "" {
		o.signing[alg] = k
	}
	return k
}

// Client returns an HTTP client that trusts the issuer's TLS certificate.
func (o *OIDCIssuer) Client() *http.Client { return o.srv.Client() }

// JWKSURL is where the issuer serves its JWKS (also named by discovery).
func (o *OIDCIssuer) JWKSURL() string { return o.URL + "/.well-known/jwks" }

// JWKS returns the currently published key set as JSON, for jwks_file tests.
func (o *OIDCIssuer) JWKS() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.jwksLocked()
}

func (o *OIDCIssuer) jwksLocked() []byte {
	var set jose.JSONWebKeySet
	for _, k := range o.published {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.signer.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err)
	}
	return b
}

// KID returns the key ID currently signing tokens of alg.
func (o *OIDCIssuer) KID(alg jose.SignatureAlgorithm) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.signing[alg].kid
}

// RotateKey publishes a new ES256 key and makes it the ES256 signing key. With
// keepOld the previous ES256 key stays published (overlap), otherwise it is
// dropped from the JWKS. It returns the new key ID.
func (o *OIDCIssuer) RotateKey(keepOld bool) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.signing[jose.ES256]
	nk := o.addKey(jose.ES256, k)
	if !keepOld {
		kept := o.published[:0]
		for _, p := range o.published {
			if p != old {
				kept = append(kept, p)
			}
		}
		o.published = kept
	}
	return nk.kid
}

// SetDown makes every endpoint answer 503 (true) or serve again (false).
func (o *OIDCIssuer) SetDown(down bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.down = down
}

// JWKSFetches counts JWKS requests served or refused so far.
func (o *OIDCIssuer) JWKSFetches() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.jwksHits
}

// DiscoveryFetches counts discovery-document requests so far.
func (o *OIDCIssuer) DiscoveryFetches() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.discHits
}

func (o *OIDCIssuer) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	o.mu.Lock()
	o.discHits++
	down := o.down
	o.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                o.URL,
		"jwks_uri":                              o.JWKSURL(),
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"},
	})
}

func (o *OIDCIssuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	o.mu.Lock()
	o.jwksHits++
	down := o.down
	body := o.jwksLocked()
	o.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// TokenOption changes how one token is minted.
type TokenOption func(*tokenOptions)

type tokenOptions struct {
	alg      jose.SignatureAlgorithm
	kid      *string
	iat, nbf time.Time
	exp      time.Time
	lifetime time.Duration
}

// WithAlg signs with the issuer's key for alg (default ES256).
func WithAlg(alg jose.SignatureAlgorithm) TokenOption {
	return func(t *tokenOptions) { t.alg = alg }
}

// WithKID puts kid in the header instead of the signing key's ID (the
// signature is still made with the real key), e.g. an unknown kid; "" omits it.
func WithKID(kid string) TokenOption { return func(t *tokenOptions) { t.kid = &kid } }

// WithIssuedAt sets iat (and nbf, unless WithNotBefore is also given).
func WithIssuedAt(at time.Time) TokenOption { return func(t *tokenOptions) { t.iat = at } }

// WithNotBefore sets nbf.
func WithNotBefore(at time.Time) TokenOption { return func(t *tokenOptions) { t.nbf = at } }

// WithExpiry sets exp.
func WithExpiry(at time.Time) TokenOption { return func(t *tokenOptions) { t.exp = at } }

// WithLifetime sets exp to iat + d.
func WithLifetime(d time.Duration) TokenOption { return func(t *tokenOptions) { t.lifetime = d } }

// Mint signs a token with the standard claims (iss, aud, iat, nbf, exp of
// iat+5m, a random jti) merged with claims; a nil value in claims deletes that
// claim.
func (o *OIDCIssuer) Mint(t testing.TB, claims map[string]any, opts ...TokenOption) string {
	t.Helper()
	to := tokenOptions{alg: jose.ES256}
	for _, opt := range opts {
		opt(&to)
	}
	all := o.baseClaims(to)
	merge(all, claims)
	o.mu.Lock()
	k := o.signing[to.alg]
	o.mu.Unlock()
	if k == nil {
		t.Fatalf("testkit: the OIDC issuer has no key for %s", to.alg)
	}
	kid := k.kid
	if to.kid != nil {
		kid = *to.kid
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: to.alg, Key: jose.JSONWebKey{Key: k.signer, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatalf("testkit: signer: %v", err)
	}
	tok, err := jwt.Signed(signer).Claims(all).Serialize()
	if err != nil {
		t.Fatalf("testkit: sign: %v", err)
	}
	return tok
}

func (o *OIDCIssuer) baseClaims(to tokenOptions) map[string]any {
	now := o.clock.Now()
	iat := now
	if !to.iat.IsZero() {
		iat = to.iat
	}
	nbf := iat
	if !to.nbf.IsZero() {
		nbf = to.nbf
	}
	life := 5 * time.Minute
	if to.lifetime != 0 {
		life = to.lifetime
	}
	exp := iat.Add(life)
	if !to.exp.IsZero() {
		exp = to.exp
	}
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	return map[string]any{
		"iss": o.URL,
		"aud": o.Audience,
		"iat": iat.Unix(),
		"nbf": nbf.Unix(),
		"exp": exp.Unix(),
		"jti": hex.EncodeToString(jti[:]),
	}
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}

// overlay copies src into dst, keeping nil values so that Mint deletes those
// claims from the standard ones too.
func overlay(dst, src map[string]any) {
	for k, v := range src {
		dst[k] = v
	}
}

// GitHubToken mints a GitHub Actions-shaped token for acme/payments on main;
// over replaces or (with nil) deletes claims.
func (o *OIDCIssuer) GitHubToken(t testing.TB, over map[string]any, opts ...TokenOption) string {
	c := map[string]any{
		"sub":                   "repo:acme/payments:ref:refs/heads/main",
		"repository":            "acme/payments",
		"repository_owner":      "acme",
		"repository_id":         "4242",
		"ref":                   "refs/heads/main",
		"ref_type":              "branch",
		"sha":                   "0123456789abcdef0123456789abcdef01234567",
		"workflow":              "deploy",
		"workflow_ref":          "acme/payments/.github/workflows/deploy.yml@refs/heads/main",
		"job_workflow_ref":      "acme/payments/.github/workflows/deploy.yml@refs/heads/main",
		"environment":           "production",
		"event_name":            "push",
		"actor":                 "octocat",
		"run_id":                "9876543210",
		"run_number":            "17",
		"run_attempt":           "1",
		"runner_environment":    "github-hosted",
		"repository_visibility": "private",
	}
	overlay(c, over)
	return o.Mint(t, c, opts...)
}

// GitLabToken mints a GitLab CI id_token-shaped token for platform/billing on
// main; over replaces or (with nil) deletes claims.
func (o *OIDCIssuer) GitLabToken(t testing.TB, over map[string]any, opts ...TokenOption) string {
	c := map[string]any{
		"sub":                   "project_path:platform/billing:ref_type:branch:ref:main",
		"namespace_id":          "12",
		"namespace_path":        "platform",
		"project_id":            "34",
		"project_path":          "platform/billing",
		"user_login":            "deployer",
		"pipeline_id":           "556677",
		"pipeline_source":       "push",
		"job_id":                "998877",
		"ref":                   "main",
		"ref_type":              "branch",
		"ref_protected":         "true",
		"environment":           "production",
		"environment_protected": "true",
		"sha":                   "89abcdef0123456789abcdef0123456789abcdef",
	}
	overlay(c, over)
	return o.Mint(t, c, opts...)
}

// KubernetesToken mints a projected service-account token for namespace/sa
// with a one-hour lifetime (unless opts say otherwise); over replaces or (with
// nil) deletes top-level claims.
func (o *OIDCIssuer) KubernetesToken(t testing.TB, namespace, serviceAccount string, over map[string]any, opts ...TokenOption) string {
	c := map[string]any{
		"sub": "system:serviceaccount:" + namespace + ":" + serviceAccount,
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]any{"name": serviceAccount, "uid": "5b5c0b1e-0000-4000-8000-000000000001"},
			"pod":            map[string]any{"name": serviceAccount + "-7d9f8c-abcde", "uid": "5b5c0b1e-0000-4000-8000-000000000002"},
			"node":           map[string]any{"name": "node-1", "uid": "5b5c0b1e-0000-4000-8000-000000000003"},
		},
	}
	overlay(c, over)
	return o.Mint(t, c, append([]TokenOption{WithLifetime(time.Hour)}, opts...)...)
}

// UnsignedToken returns an alg "none" token with the standard claims merged
// with claims: the classic signature bypass.
func (o *OIDCIssuer) UnsignedToken(t testing.TB, claims map[string]any) string {
	t.Helper()
	all := o.baseClaims(tokenOptions{})
	merge(all, claims)
	payload, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

// HMACTokenWithPublicKey returns an HS256 token whose HMAC key is the PEM of
// the issuer's RSA public key, with that key's kid: the algorithm-confusion
// attack on verifiers that let the token choose the algorithm.
func (o *OIDCIssuer) HMACTokenWithPublicKey(t testing.TB, claims map[string]any) string {
	t.Helper()
	o.mu.Lock()
	k := o.signing[jose.RS256]
	o.mu.Unlock()
	der, err := x509.MarshalPKIXPublicKey(k.signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: secret, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	all := o.baseClaims(tokenOptions{})
	merge(all, claims)
	tok, err := jwt.Signed(signer).Claims(all).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
