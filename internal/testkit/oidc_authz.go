package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// OIDCLogin is a test OpenID provider for browser sign-in: discovery, an
// authorization endpoint that signs in whoever SetUser named (no login form)
// and redirects back with a one-time code, a token endpoint that checks the
// PKCE verifier (S256) and answers with an ES256 ID token, and its JWKS. It
// runs on a loopback HTTPS server with httptest's certificate.
type OIDCLogin struct {
	// URL is the issuer URL (the `iss` of its ID tokens).
	URL string
	// ClientID is the only client it accepts (the `aud` of its ID tokens).
	ClientID string

	srv *httptest.Server
	key *ecdsa.PrivateKey
	kid string

	mu     sync.Mutex
	user   map[string]any
	codes  map[string]authCode
	logins int
}

type authCode struct {
	claims      map[string]any
	redirectURI string
	challenge   string
	nonce       string
	expires     time.Time
}

// NewOIDCLogin starts a provider for clientID, closed at cleanup.
func NewOIDCLogin(t testing.TB, clientID string) *OIDCLogin {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &OIDCLogin{ClientID: clientID, key: key, kid: "login-" + randHex(4), codes: map[string]authCode{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /jwks", p.jwks)
	p.srv = httptest.NewTLSServer(mux)
	p.URL = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// SetUser makes the next sign-ins those of a user with these claims (sub,
// groups, email ...).
func (p *OIDCLogin) SetUser(claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = claims
}

// Logins counts codes exchanged for ID tokens.
func (p *OIDCLogin) Logins() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logins
}

// Client trusts the provider's certificate.
func (p *OIDCLogin) Client() *http.Client { return p.srv.Client() }

// CertificatePEM is the provider's TLS certificate, for trust files.
func (p *OIDCLogin) CertificatePEM() []byte {
	return pemCert(p.srv.Certificate().Raw)
}

func (p *OIDCLogin) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSONBody(w, http.StatusOK, map[string]any{
		"issuer": p.URL, "authorization_endpoint": p.URL + "/authorize", "token_endpoint": p.URL + "/token",
		"jwks_uri": p.URL + "/jwks", "response_types_supported": []string{"code"},
		"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"ES256"},
		"code_challenge_methods_supported": []string{"S256"}, "grant_types_supported": []string{"authorization_code"},
	})
}

func (p *OIDCLogin) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSONBody(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: p.key.Public(), KeyID: p.kid, Algorithm: "ES256", Use: "sig"}}})
}

// authorize checks the request the way a strict provider does and redirects
// back with a code; errors go back as error=... when the redirect URI is
// usable.
func (p *OIDCLogin) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme != "https" || q.Get("client_id") != p.ClientID {
		http.Error(w, "bad client_id or redirect_uri", http.StatusBadRequest)
		return
	}
	back := redirect.Query()
	back.Set("state", q.Get("state"))
	p.mu.Lock()
	user := p.user
	p.mu.Unlock()
	switch {
	case q.Get("response_type") != "code", q.Get("code_challenge_method") != "S256", q.Get("code_challenge") == "":
		back.Set("error", "invalid_request")
	case user == nil:
		back.Set("error", "access_denied")
	default:
		code := randHex(16)
		p.mu.Lock()
		p.codes[code] = authCode{claims: user, redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"),
			nonce: q.Get("nonce"), expires: time.Now().Add(time.Minute)}
		p.mu.Unlock()
		back.Set("code", code)
	}
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (p *OIDCLogin) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	clientID := r.PostForm.Get("client_id")
	if id, _, ok := r.BasicAuth(); ok {
		clientID = id
	}
	code := r.PostForm.Get("code")
	p.mu.Lock()
	ac, ok := p.codes[code]
	delete(p.codes, code) // one use only
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case r.PostForm.Get("grant_type") != "authorization_code", clientID != p.ClientID:
		writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": "invalid_client"})
		return
	case !ok || time.Now().After(ac.expires) || r.PostForm.Get("redirect_uri") != ac.redirectURI ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != ac.challenge:
		writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": p.URL, "aud": p.ClientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "nonce": ac.nonce}
	for k, v := range ac.claims {
		claims[k] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: p.key, KeyID: p.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	idt, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p.mu.Lock()
	p.logins++
	p.mu.Unlock()
	writeJSONBody(w, http.StatusOK, map[string]any{"access_token": randHex(16), "token_type": "Bearer", "expires_in": 300, "id_token": idt})
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
