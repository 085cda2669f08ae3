package enroll

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/policy"
)

func verifyReason(t *testing.T, f *fixture, tok string) string {
	t.Helper()
	_, err := f.v.Verify(context.Background(), f.pol, tok)
	return reasonOf(t, err)
}

func TestKeyRotationMidTestIsPickedUpOnUnknownKID(t *testing.T) {
	f := newFixture(t)
	oldTok := f.gh.GitHubToken(t, nil)
	if r := verifyReason(t, f, oldTok); r != "" {
		t.Fatalf("first token: %s", r)
	}
	fetches := f.gh.JWKSFetches()

	// The issuer rotates, keeping the old key published for overlap. A token
	// with the new kid triggers one refresh; old tokens keep verifying.
	f.gh.RotateKey(true)
	f.clk.Advance(time.Minute) // past the minimum refresh interval since the first fetch
	if r := verifyReason(t, f, f.gh.GitHubToken(t, nil)); r != "" {
		t.Fatalf("token under the new key: %s", r)
	}
	if got := f.gh.JWKSFetches() - fetches; got != 1 {
		t.Errorf("refresh on the new kid fetched %d times, want 1", got)
	}
	if r := verifyReason(t, f, oldTok); r != "" {
		t.Errorf("token under the overlapping old key: %s", r)
	}

	// The issuer rotates again and drops the previous key. Once the cache
	// refreshes, tokens under the dropped key fail.
	prevTok := f.gh.GitHubToken(t, nil)
	f.gh.RotateKey(false)
	f.clk.Advance(time.Minute)
	if r := verifyReason(t, f, f.gh.GitHubToken(t, nil)); r != "" {
		t.Fatalf("token under the newest key: %s", r)
	}
	if r := verifyReason(t, f, prevTok); r != ReasonTokenBadSignature {
		t.Errorf("token under the dropped key: reason %q, want token_bad_signature", r)
	}
}

func TestUnknownKIDRefreshIsRateLimited(t *testing.T) {
	f := newFixture(t)
	if r := verifyReason(t, f, f.gh.GitHubToken(t, nil)); r != "" {
		t.Fatal(r)
	}
	base := f.gh.JWKSFetches()
	random := func() string {
		var b [8]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}

	// 50 tokens with random kids, some concurrently, within one interval.
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		tok := f.gh.GitHubToken(t, nil, testkit.WithKID(random()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.v.Verify(context.Background(), f.pol, tok); Reason(err) != ReasonTokenBadSignature {
				t.Errorf("random kid: %v, want token_bad_signature", err)
			}
		}()
		if i%10 == 9 {
			wg.Wait()
			f.clk.Advance(5 * time.Second) // 25s in all: still inside the 1m interval
		}
	}
	wg.Wait()
	if got := f.gh.JWKSFetches() - base; got != 0 {
		t.Errorf("random kids within the minimum interval of the last fetch caused %d fetches, want 0", got)
	}

	// After the interval, one more unknown kid may refresh once; the next ones
	// in the same interval may not.
	f.clk.Advance(time.Minute)
	for i := 0; i < 20; i++ {
		_ = verifyReason(t, f, f.gh.GitHubToken(t, nil, testkit.WithKID(random())))
	}
	if got := f.gh.JWKSFetches() - base; got != 1 {
		t.Errorf("after the interval, 20 random kids caused %d fetches, want 1", got)
	}
	// Known kids never fetch while the cache is fresh.
	for i := 0; i < 20; i++ {
		if r := verifyReason(t, f, f.gh.GitHubToken(t, nil)); r != "" {
			t.Fatal(r)
		}
	}
	if got := f.gh.JWKSFetches() - base; got != 1 {
		t.Errorf("known kids caused fetches: %d in all, want 1", got)
	}
}

func TestCachedKeysVerifyWhileTheIssuerIsDown(t *testing.T) {
	f := newFixture(t)
	if r := verifyReason(t, f, f.gh.GitHubToken(t, nil)); r != "" {
		t.Fatal(r)
	}
	f.gh.SetDown(true)

	// Past the refresh interval: a refresh is tried, fails, and the cached
	// keys still verify.
	f.clk.Advance(20 * time.Minute)
	before := f.gh.JWKSFetches() + f.gh.DiscoveryFetches()
	if r := verifyReason(t, f, f.gh.GitHubToken(t, nil)); r != "" {
		t.Fatalf("with the issuer down: %s, want cached keys to verify", r)
	}
	if f.gh.JWKSFetches()+f.gh.DiscoveryFetches() == before {
		t.Error("no refresh was attempted past the refresh interval")
	}
	// Further requests in the same minimum interval do not hammer the issuer.
	tried := f.gh.JWKSFetches() + f.gh.DiscoveryFetches()
	for i := 0; i < 10; i++ {
		if r := verifyReason(t, f, f.gh.GitHubToken(t, nil)); r != "" {
			t.Fatal(r)
		}
	}
	if got := f.gh.JWKSFetches() + f.gh.DiscoveryFetches(); got != tried {
		t.Errorf("requests while down caused %d more fetches, want 0", got-tried)
	}

	// Beyond the maximum staleness the cache no longer vouches for keys.
	f.clk.Advance(25 * time.Hour)
	if r := verifyReason(t, f, f.gh.GitHubToken(t, nil)); r != ReasonTokenIssuerUnavailable {
		t.Errorf("after 25h down: %q, want token_issuer_unavailable", r)
	}

	// Back up: the next refresh succeeds.
	f.gh.SetDown(false)
	f.clk.Advance(time.Minute)
	if r := verifyReason(t, f, f.gh.GitHubToken(t, nil)); r != "" {
		t.Errorf("after recovery: %s", r)
	}
}

func TestAnIssuerDownFromTheStartIsUnavailableNotABadToken(t *testing.T) {
	f := newFixture(t)
	f.gl.SetDown(true)
	if r := verifyReason(t, f, f.gl.GitLabToken(t, nil)); r != ReasonTokenIssuerUnavailable {
		t.Fatalf("reason %q, want token_issuer_unavailable", r)
	}
	// Retrying immediately does not fetch again.
	n := f.gl.DiscoveryFetches()
	_ = verifyReason(t, f, f.gl.GitLabToken(t, nil))
	if f.gl.DiscoveryFetches() != n {
		t.Error("a retry inside the minimum interval fetched again")
	}
}

func TestStaticJWKSSources(t *testing.T) {
	clk := clock.NewFake(t0)
	iss := testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(clk))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), iss.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"jwks_file: jwks.json", "jwks_url: " + iss.JWKSURL()} {
		t.Run(src, func(t *testing.T) {
			path := filepath.Join(dir, "policy.yaml")
			doc := fmt.Sprintf("trust_domain: example.org\ntoken_issuers:\n  - name: airgap\n    issuer: %s\n    audience: %s\n    %s\n", iss.URL, testkit.DefaultOIDCAudience, src)
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			pol, err := policy.LoadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			v := NewVerifier(clk, WithHTTPClient(iss.Client()))
			disc := iss.DiscoveryFetches()
			if _, err := v.Verify(context.Background(), pol, iss.GitHubToken(t, nil, testkit.WithAlg(jose.EdDSA))); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if iss.DiscoveryFetches() != disc {
				t.Error("a static JWKS source used discovery")
			}
		})
	}
}

func TestDiscoveryMustNameTheConfiguredIssuer(t *testing.T) {
	clk := clock.NewFake(t0)
	iss := testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(clk))
	// Configure the issuer with a trailing slash: the token and the discovery
	// document say otherwise, so this is a different issuer.
	pol, err := policy.Parse(fmt.Appendf(nil, "trust_domain: example.org\ntoken_issuers:\n  - name: a\n    issuer: %s/\n    audience: %s\n", iss.URL, testkit.DefaultOIDCAudience))
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(clk, WithHTTPClient(iss.Client()))
	tok := iss.GitHubToken(t, map[string]any{"iss": iss.URL + "/"})
	if _, err := v.Verify(context.Background(), pol, tok); Reason(err) != ReasonTokenIssuerUnavailable {
		t.Fatalf("Verify = %v, want token_issuer_unavailable for a discovery document naming another issuer", err)
	}
}

func TestParseJWKSDropsSymmetricAndWeakKeys(t *testing.T) {
	raw := []byte(`{"keys":[
		{"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
		{"kty":"EC","kid":"enc","use":"enc","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
		{"kty":"EC","kid":"ok","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
		{"kty":"weird","kid":"w"}
	]}`)
	keys, err := parseJWKS(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].KeyID != "ok" {
		t.Errorf("kept %d keys (%v), want only the EC signature key", len(keys), keys)
	}
	if _, err := parseJWKS([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)); err == nil {
		t.Error("a JWKS of only symmetric keys was accepted")
	}
}

// match: a token's kid selects the keys of that kid, in the set's order;
// without any, the keys published without a kid; without a kid in the
// token, every key. A single match is a part of the cache that appending
// to cannot change.
func TestMatchSelectsTheKeysOfTheKid(t *testing.T) {
	key := func(kid, alg string) jose.JSONWebKey { return jose.JSONWebKey{KeyID: kid, Algorithm: alg} }
	s := &keySource{keys: []jose.JSONWebKey{key("a", "ES256"), key("", "RS256"), key("d", "ES256"), key("d", "EdDSA"), key("", "PS256")}}
	names := func(ks []jose.JSONWebKey) string {
		var out []string
		for _, k := range ks {
			out = append(out, k.KeyID+"/"+k.Algorithm)
		}
		return strings.Join(out, " ")
	}
	for kid, want := range map[string]string{
		"":      "a/ES256 /RS256 d/ES256 d/EdDSA /PS256",
		"a":     "a/ES256",
		"d":     "d/ES256 d/EdDSA",
		"other": "/RS256 /PS256",
	} {
		if got := names(s.match(kid)); got != want {
			t.Errorf("match(%q) = %q, want %q", kid, got, want)
		}
	}
	one := s.match("a")
	_ = append(one, key("x", "x"))
	if s.keys[1].KeyID != "" {
		t.Error("appending to a single match wrote into the cache")
	}
	if got := (&keySource{keys: []jose.JSONWebKey{key("a", "")}}).match("b"); len(got) != 0 {
		t.Errorf("no key of the kid and none unnamed: match = %v", got)
	}
}
