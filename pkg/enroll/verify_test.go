package enroll

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/workload-ca/workload-ca/internal/testkit"
)

func TestHostileTokensAreRefusedWithTheirReason(t *testing.T) {
	f := newFixture(t)
	other := testkit.NewOIDCIssuer(t, testkit.WithOIDCClock(f.clk)) // not in the policy
	gh := f.gh
	tests := []struct {
		name  string
		token func() string
		want  string
	}{
		{"an alg none token is refused with token_bad_signature", func() string { return gh.UnsignedToken(t, nil) }, ReasonTokenBadSignature},
		{"an HS256 token keyed with the issuer's public key is refused with token_bad_signature", func() string { return gh.HMACTokenWithPublicKey(t, nil) }, ReasonTokenBadSignature},
		{"a token with an unknown kid is refused with token_bad_signature", func() string { return gh.GitHubToken(t, nil, testkit.WithKID("no-such-kid")) }, ReasonTokenBadSignature},
		{"a token signed by another issuer's key under this issuer's name is refused with token_bad_signature", func() string {
			return other.GitHubToken(t, map[string]any{"iss": gh.URL}, testkit.WithKID(gh.KID(jose.ES256)))
		}, ReasonTokenBadSignature},
		{"a token with a tampered payload is refused with token_bad_signature", func() string {
			tok := gh.GitHubToken(t, nil)
			parts := strings.Split(tok, ".")
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			payload = []byte(strings.Replace(string(payload), "acme/payments", "acme/paymentz", 1))
			parts[1] = base64.RawURLEncoding.EncodeToString(payload)
			return strings.Join(parts, ".")
		}, ReasonTokenBadSignature},
		{"an expired token is refused with token_expired", func() string {
			return gh.GitHubToken(t, nil, testkit.WithIssuedAt(t0.Add(-10*time.Minute)), testkit.WithLifetime(5*time.Minute))
		}, ReasonTokenExpired},
		{"a token expired by less than the leeway is accepted", func() string {
			return gh.GitHubToken(t, nil, testkit.WithIssuedAt(t0.Add(-5*time.Minute-20*time.Second)), testkit.WithLifetime(5*time.Minute))
		}, ""},
		{"a token issued too long ago is refused with token_expired", func() string {
			return gh.GitHubToken(t, nil, testkit.WithIssuedAt(t0.Add(-2*time.Hour)), testkit.WithExpiry(t0.Add(time.Hour)))
		}, ReasonTokenExpired},
		{"a token not valid before a future time is refused with token_not_yet_valid", func() string {
			return gh.GitHubToken(t, nil, testkit.WithNotBefore(t0.Add(5*time.Minute)))
		}, ReasonTokenNotYetValid},
		{"a token issued in the future is refused with token_not_yet_valid", func() string {
			return gh.GitHubToken(t, nil, testkit.WithIssuedAt(t0.Add(10*time.Minute)), testkit.WithNotBefore(t0))
		}, ReasonTokenNotYetValid},
		{"a token without exp is refused with token_malformed", func() string { return gh.GitHubToken(t, map[string]any{"exp": nil}) }, ReasonTokenMalformed},
		{"a token without iat is refused with token_malformed while a maximum age applies", func() string { return gh.GitHubToken(t, map[string]any{"iat": nil}) }, ReasonTokenMalformed},
		{"a token for another audience is refused with token_wrong_audience", func() string { return gh.GitHubToken(t, map[string]any{"aud": "https://other.example.org"}) }, ReasonTokenWrongAudience},
		{"a token with several audiences including ours is accepted", func() string {
			return gh.GitHubToken(t, map[string]any{"aud": []string{"x", "https://ca.example.org"}})
		}, ""},
		{"a token from an unknown issuer is refused with token_unknown_issuer", func() string { return other.GitHubToken(t, nil) }, ReasonTokenUnknownIssuer},
		{"a token without iss is refused with token_malformed", func() string { return gh.GitHubToken(t, map[string]any{"iss": nil}) }, ReasonTokenMalformed},
		{"a token with a string exp is refused with token_malformed", func() string { return gh.GitHubToken(t, map[string]any{"exp": "tomorrow"}) }, ReasonTokenMalformed},
		{"an oversized token is refused with token_malformed", func() string {
			return gh.GitHubToken(t, map[string]any{"padding": strings.Repeat("a", 20<<10)})
		}, ReasonTokenMalformed},
		{"garbage is refused with token_malformed", func() string { return "not.a.jwt" }, ReasonTokenMalformed},
		{"an empty token is refused with token_malformed", func() string { return "" }, ReasonTokenMalformed},
		{"a JWE-shaped token is refused with token_malformed", func() string { return "a.b.c.d.e" }, ReasonTokenMalformed},
		{"an RS256 token verifies", func() string { return gh.GitHubToken(t, nil, testkit.WithAlg(jose.RS256)) }, ""},
		{"a PS384 token verifies", func() string { return gh.GitHubToken(t, nil, testkit.WithAlg(jose.PS384)) }, ""},
		{"an ES384 token verifies", func() string { return gh.GitHubToken(t, nil, testkit.WithAlg(jose.ES384)) }, ""},
		{"an EdDSA token verifies", func() string { return gh.GitHubToken(t, nil, testkit.WithAlg(jose.EdDSA)) }, ""},
		{"a token without kid verifies against all keys", func() string { return gh.GitHubToken(t, nil, testkit.WithKID("")) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token()
			_, err := f.v.Verify(context.Background(), f.pol, tok)
			if got := reasonOf(t, err); got != tc.want {
				t.Fatalf("Verify() reason = %q (%v), want %q", got, err, tc.want)
			}
			if err != nil && len(tok) > 16 && strings.Contains(err.Error(), tok) {
				t.Errorf("error message contains the token")
			}
			if err != nil {
				for _, part := range strings.Split(tok, ".") {
					if len(part) > 16 && strings.Contains(err.Error(), part) {
						t.Errorf("error message contains a token segment")
					}
				}
			}
		})
	}
}

func TestVerifiedTokenCarriesClaimsAndReplayKey(t *testing.T) {
	f := newFixture(t)
	tok, err := f.v.Verify(context.Background(), f.pol, f.gh.GitHubToken(t, map[string]any{"jti": "abc"}))
	if err != nil {
		t.Fatal(err)
	}
	if tok.IssuerName != "github" || tok.Subject != "repo:acme/payments:ref:refs/heads/main" || tok.Claims["sha"] == nil {
		t.Errorf("token = %+v", tok)
	}
	if tok.ReplayKey != replayKey(f.gh.URL, "abc", "") || len(tok.ReplayKey) != 64 {
		t.Errorf("ReplayKey = %q, want the hash of issuer and jti", tok.ReplayKey)
	}
	if want := tok.Expiry.Add(30 * time.Second); !tok.ReplayUntil.Equal(want) {
		t.Errorf("ReplayUntil = %v, want exp+leeway %v", tok.ReplayUntil, want)
	}
	// Without a jti the key depends on the whole token, so two tokens differ.
	a, _ := f.v.Verify(context.Background(), f.pol, f.gh.GitHubToken(t, map[string]any{"jti": nil}))
	b, _ := f.v.Verify(context.Background(), f.pol, f.gh.GitHubToken(t, map[string]any{"jti": nil, "run_id": "2"}))
	if a == nil || b == nil || a.ReplayKey == b.ReplayKey {
		t.Error("tokens without jti share a replay key")
	}
}

func TestPerIssuerMaxTokenAgeApplies(t *testing.T) {
	f := newFixture(t)
	// k8s allows 2h of age; a 90-minute-old token with a long exp verifies there...
	tok := f.k8s.KubernetesToken(t, "payments", "api", nil, testkit.WithIssuedAt(t0.Add(-90*time.Minute)), testkit.WithLifetime(3*time.Hour))
	if _, err := f.v.Verify(context.Background(), f.pol, tok); err != nil {
		t.Fatalf("Verify = %v, want the k8s max_token_age of 2h to apply", err)
	}
	// ...but the same age is too old under the default of 1h.
	tok = f.gh.GitHubToken(t, nil, testkit.WithIssuedAt(t0.Add(-90*time.Minute)), testkit.WithLifetime(3*time.Hour))
	if _, err := f.v.Verify(context.Background(), f.pol, tok); Reason(err) != ReasonTokenExpired {
		t.Fatalf("Verify = %v, want token_expired", err)
	}
}

func BenchmarkVerifyWarmCache(b *testing.B) {
	f := newFixture(b)
	tok := f.gh.GitHubToken(b, nil)
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, f.pol, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, f.pol, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyWarmCacheRS256(b *testing.B) {
	f := newFixture(b)
	tok := f.gh.GitHubToken(b, nil, testkit.WithAlg(jose.RS256))
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, f.pol, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, f.pol, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReencodedTokensWithoutJTIKeepTheirReplayKey(t *testing.T) {
	f := newFixture(t)
	tok := f.gh.GitHubToken(t, map[string]any{"jti": nil})
	orig, err := f.v.Verify(context.Background(), f.pol, tok)
	if err != nil {
		t.Fatal(err)
	}
	variants := map[string]string{}
	if v, ok := testkit.HighS(tok); ok {
		variants["ECDSA signature (r, n-s)"] = v
	}
	for i, name := range []string{"header", "payload", "signature"} {
		if v, ok := testkit.OtherUnusedBits(tok, i); ok {
			variants["other unused bits in the "+name] = v
		}
	}
	if variants["ECDSA signature (r, n-s)"] == "" || variants["other unused bits in the signature"] == "" {
		t.Fatalf("could not build both signature re-encodings: %v", variants)
	}
	for name, v := range variants {
		if v == tok {
			t.Fatalf("%s: not a different text", name)
		}
		got, err := f.v.Verify(context.Background(), f.pol, v)
		if err != nil {
			// Refusing a re-encoding outright is also safe; it is not what
			// go-jose does today, so say so if it changes.
			t.Logf("%s: refused (%v)", name, err)
			continue
		}
		if got.ReplayKey != orig.ReplayKey {
			t.Errorf("%s verifies with another replay key: a replay of the same token", name)
		}
	}
}

func TestRequireJTIRefusesTokensWithoutOne(t *testing.T) {
	f := newFixture(t)
	// gitlab has require_jti: true in the fixture policy.
	_, err := f.v.Verify(context.Background(), f.pol, f.gl.GitLabToken(t, map[string]any{"jti": nil}))
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonTokenMalformed || !strings.Contains(e.Detail, "jti") || e.Issuer != "gitlab" {
		t.Fatalf("Verify = %v, want token_malformed naming the missing jti", err)
	}
	if _, err := f.v.Verify(context.Background(), f.pol, f.gl.GitLabToken(t, nil)); err != nil {
		t.Fatalf("a gitlab token with jti: %v", err)
	}
	// Issuers without the setting still accept tokens without jti.
	if _, err := f.v.Verify(context.Background(), f.pol, f.gh.GitHubToken(t, map[string]any{"jti": nil})); err != nil {
		t.Fatalf("a github token without jti: %v", err)
	}
}

// The replay key of a token with a jti is pinned: keys recorded by an
// earlier version must still match after an upgrade, or a token used just
// before it could be used again just after.
func TestReplayKeyOfAJTIIsTheHashOfIssuerAndJTI(t *testing.T) {
	sum := sha256.Sum256([]byte("jti\x00https://idp.example\x00abc"))
	if got, want := replayKey("https://idp.example", "abc", "ignored.when.jti"), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("replayKey = %s, want %s", got, want)
	}
	long := strings.Repeat("j", 300) // past the stack buffer
	sum = sha256.Sum256([]byte("jti\x00https://idp.example\x00" + long))
	if got, want := replayKey("https://idp.example", long, ""), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("replayKey of a long jti = %s, want %s", got, want)
	}
}
