package jwtsvid_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/jwtsvid"
)

const workload = "spiffe://example.org/prod/payments"

func b64(v any) string {
	raw, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// forge builds a token with the given header and claims and signature.
func forge(header, claims map[string]any, sig []byte) string {
	return b64(header) + "." + b64(claims) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerifyGivesAReasonForEachFailure(t *testing.T) {
	c := newCA(t)
	v, _ := c.verifier(t)
	good := c.sign(t, workload, 5*time.Minute, "api", "vault")
	other := c.sign(t, "spiffe://other.org/x", 5*time.Minute, "api")
	parts := strings.Split(good.Token, ".")
	now := c.clk.Now()
	claims := map[string]any{"sub": workload, "aud": "api", "exp": now.Add(time.Minute).Unix(), "iat": now.Unix()}

	// Alg confusion: an HMAC "signature" keyed with the public key's bytes.
	keys, err := c.mgr.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jwtkeys.PublicKey(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(pub)
	hsInput := b64(map[string]any{"alg": "HS256", "kid": good.KeyID, "typ": "JWT"}) + "." + b64(claims)
	mac := hmac.New(sha256.New, spki)
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	cases := []struct {
		name     string
		token    string
		audience string
		advance  time.Duration
		want     jwtsvid.Reason
	}{
		{"a good token verifies", good.Token, "vault", 0, ""},
		{"a token for another audience is refused with token_wrong_audience", good.Token, "billing", 0, jwtsvid.ReasonWrongAudience},
		{"an expired token is refused with token_expired", good.Token, "api", 5*time.Minute + 30*time.Second, jwtsvid.ReasonExpired},
		{"a token just inside the leeway verifies", good.Token, "api", 5*time.Minute + 29*time.Second, ""},
		{"alg none is refused with alg_not_allowed", forge(map[string]any{"alg": "none", "kid": good.KeyID}, claims, nil), "api", 0, jwtsvid.ReasonAlgNotAllowed},
		{"HS256 keyed with the public key is refused with alg_not_allowed", hs256, "api", 0, jwtsvid.ReasonAlgNotAllowed},
		{"RS256 over an ECDSA key is refused with alg_not_allowed", forge(map[string]any{"alg": "RS256", "kid": good.KeyID}, claims, make([]byte, 384)), "api", 0, jwtsvid.ReasonAlgNotAllowed},
		{"ES384 over a P-256 key is refused with alg_not_allowed", forge(map[string]any{"alg": "ES384", "kid": good.KeyID}, claims, make([]byte, 96)), "api", 0, jwtsvid.ReasonAlgNotAllowed},
		{"a changed payload is refused with token_bad_signature", parts[0] + "." + b64(claims) + "." + parts[2], "api", 0, jwtsvid.ReasonBadSignature},
		{"an unknown kid is refused with unknown_kid", forge(map[string]any{"alg": "ES256", "kid": "nope"}, claims, make([]byte, 64)), "api", 0, jwtsvid.ReasonUnknownKid},
		{"a subject of another trust domain is refused with wrong_trust_domain", other.Token, "api", 0, jwtsvid.ReasonWrongTrustDomain},
		{"garbage is refused with token_malformed", "garbage", "api", 0, jwtsvid.ReasonMalformed},
		{"a header that is not JSON is refused with token_malformed", "e30x.e30.e30", "api", 0, jwtsvid.ReasonMalformed},
		{"a token without kid is refused with token_malformed", forge(map[string]any{"alg": "ES256"}, claims, make([]byte, 64)), "api", 0, jwtsvid.ReasonMalformed},
		{"a critical header is refused with token_malformed", forge(map[string]any{"alg": "ES256", "kid": good.KeyID, "crit": []string{"x"}}, claims, nil), "api", 0, jwtsvid.ReasonMalformed},
		{"a huge token is refused with token_malformed", strings.Repeat("a", jwtsvid.MaxTokenBytes+1), "api", 0, jwtsvid.ReasonMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.clk.Advance(tc.advance)
			defer c.clk.Advance(-tc.advance)
			svid, err := v.Verify(context.Background(), tc.token, tc.audience)
			if got := jwtsvid.ReasonOf(err); got != tc.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.want)
			}
			if tc.want == "" {
				if svid.ID.String() != workload || svid.KeyID != good.KeyID || svid.JTI != good.JTI || !svid.Expiry.Equal(good.Expiry) {
					t.Errorf("svid %+v", svid)
				}
				return
			}
			if !errors.Is(err, &jwtsvid.Error{Reason: tc.want}) {
				t.Errorf("errors.Is does not match the reason's sentinel")
			}
			if strings.Contains(err.Error(), tc.token) && len(tc.token) > 20 {
				t.Error("the error quotes the token")
			}
		})
	}
}

func TestTokenFromTheFutureIsNotYetValid(t *testing.T) {
	c := newCA(t)
	v, _ := c.verifier(t)
	c.clk.Advance(time.Minute)
	tok := c.sign(t, workload, 5*time.Minute, "api")
	c.clk.Advance(-time.Minute)
	if _, err := v.Verify(context.Background(), tok.Token, "api"); !errors.Is(err, jwtsvid.ErrNotYetValid) {
		t.Fatalf("iat a minute ahead: %v, want token_not_yet_valid", err)
	}
}

func TestVerifierRefusesToAllowHMACOrNone(t *testing.T) {
	src := jwtsvid.NewStaticSource(spiffebundle.New(td))
	for _, alg := range []string{"none", "HS256", "HS512"} {
		if _, err := jwtsvid.NewVerifier(jwtsvid.Config{TrustDomain: td, Source: src, Algorithms: []string{alg}}); err == nil {
			t.Errorf("a verifier allowing %s was built", alg)
		}
	}
}

// TestRotationAsSeenByARelyingParty: the verifier learns the next key from
// the bundle before it signs (refresh hint) or on its unknown kid, accepts
// tokens of both keys during the overlap, and refuses a token of the
// retired key once the key has left the bundle, with unknown_kid.
func TestRotationAsSeenByARelyingParty(t *testing.T) {
	c := newCA(t)
	v, src := c.verifier(t)
	ctx := context.Background()
	old := c.sign(t, workload, 5*time.Minute, "api")
	if _, err := v.Verify(ctx, old.Token, "api"); err != nil {
		t.Fatal(err)
	}
	if n := src.Fetches(); n != 1 {
		t.Fatalf("%d fetches for the first token, want 1", n)
	}

	c.clk.Advance(50 * time.Minute)
	next := c.tick(t).Prepared[0]
	c.clk.Advance(9 * time.Minute)
	before := c.sign(t, workload, 5*time.Minute, "api") // just before the activation
	c.clk.Advance(time.Minute)
	if res := c.tick(t); len(res.Activated) != 1 || res.Activated[0] != next {
		t.Fatalf("activation tick %+v", res)
	}
	c.clk.Advance(c.cfg.Recheck)
	after := c.sign(t, workload, 5*time.Minute, "api")
	if before.KeyID != old.KeyID || after.KeyID != next {
		t.Fatalf("signing keys before/after: %s/%s, want %s/%s", before.KeyID, after.KeyID, old.KeyID, next)
	}
	for name, tok := range map[string]string{"before": before.Token, "after": after.Token} {
		if _, err := v.Verify(ctx, tok, "api"); err != nil {
			t.Errorf("token signed %s the rotation during the overlap: %v", name, err)
		}
	}

	c.clk.Advance(c.cfg.MaxTTL + c.cfg.Grace)
	if res := c.tick(t); len(res.Retired) != 1 || res.Retired[0] != old.KeyID {
		t.Fatalf("retirement tick %+v", res)
	}
	c.clk.Advance(refreshHint) // the relying party refreshes on the hint
	_, err := v.Verify(ctx, before.Token, "api")
	if !errors.Is(err, jwtsvid.ErrUnknownKid) {
		t.Fatalf("token of the retired key: %v, want unknown_kid", err)
	}
}

func TestUnknownKidRefreshesTheBundleRateLimited(t *testing.T) {
	c := newCA(t)
	v, src := c.verifier(t)
	ctx := context.Background()
	if _, err := v.Verify(ctx, c.sign(t, workload, 5*time.Minute, "api").Token, "api"); err != nil {
		t.Fatal(err)
	}
	// An emergency rotation: the relying party has not seen the new key.
	res, err := c.mgr.Rotate(ctx, jwtkeys.RotateOptions{Emergency: true})
	if err != nil {
		t.Fatal(err)
	}
	c.clk.Advance(c.cfg.Recheck)
	fresh := c.sign(t, workload, 5*time.Minute, "api")
	if fresh.KeyID != res.KeyID {
		t.Fatalf("signed by %s, want %s", fresh.KeyID, res.KeyID)
	}
	c.clk.Advance(jwtsvid.DefaultMinRefreshInterval)
	if _, err := v.Verify(ctx, fresh.Token, "api"); err != nil {
		t.Fatalf("a token of a key the cached bundle lacks: %v", err)
	}
	fetched := src.Fetches()
	if fetched != 2 {
		t.Fatalf("%d fetches, want 2 (initial, unknown kid)", fetched)
	}
	bogus := forge(map[string]any{"alg": "ES256", "kid": "bogus"}, map[string]any{"sub": workload}, make([]byte, 64))
	for i := 0; i < 5; i++ {
		if _, err := v.Verify(ctx, bogus, "api"); !errors.Is(err, jwtsvid.ErrUnknownKid) {
			t.Fatalf("bogus kid: %v", err)
		}
	}
	if n := src.Fetches(); n != fetched {
		t.Errorf("unknown kids within MinRefreshInterval caused %d more fetches, want 0", n-fetched)
	}
	if n := c.fetches.Load(); int(n) != src.Fetches() {
		t.Errorf("server saw %d fetches, source counted %d", n, src.Fetches())
	}
}

func TestBundleIsRefreshedOnItsHintAndServedStaleOnOutage(t *testing.T) {
	c := newCA(t)
	v, src := c.verifier(t)
	ctx := context.Background()
	tok := c.sign(t, workload, 10*time.Minute, "api")
	if _, err := v.Verify(ctx, tok.Token, "api"); err != nil {
		t.Fatal(err)
	}
	c.clk.Advance(refreshHint - time.Second)
	if _, err := v.Verify(ctx, tok.Token, "api"); err != nil || src.Fetches() != 1 {
		t.Fatalf("before the hint: %v, %d fetches", err, src.Fetches())
	}
	c.clk.Advance(time.Second)
	if _, err := v.Verify(ctx, tok.Token, "api"); err != nil || src.Fetches() != 2 {
		t.Fatalf("at the hint: %v, %d fetches, want 2", err, src.Fetches())
	}
	c.srv.Close() // the CA is down: the cached bundle keeps working
	c.clk.Advance(refreshHint)
	tok2 := c.sign(t, workload, 5*time.Minute, "api")
	if _, err := v.Verify(ctx, tok2.Token, "api"); err != nil {
		t.Fatalf("with the CA down and a cached bundle: %v", err)
	}

	// A source that never fetched anything says bundle_unavailable.
	v2, _ := c.verifier(t)
	if _, err := v2.Verify(ctx, tok2.Token, "api"); !errors.Is(err, jwtsvid.ErrBundleUnavailable) {
		t.Fatalf("no bundle at all: %v, want bundle_unavailable", err)
	}
}
