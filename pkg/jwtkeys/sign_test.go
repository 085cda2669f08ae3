package jwtkeys_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
)

func TestTokensVerifyWithGoSPIFFE(t *testing.T) {
	cases := []struct {
		name string
		b    backend
		kt   hsm.KeyType
		alg  string
	}{
		{"an ES256 token from a software key verifies", sqliteBackend, hsm.ECDSAP256, "ES256"},
		{"an ES384 token from a software key verifies", sqliteBackend, hsm.ECDSAP384, "ES384"},
		{"an ES256 token from SoftHSM verifies", softhsmBackend, hsm.ECDSAP256, "ES256"},
		{"an RS256 token from SoftHSM verifies", softhsmBackend, hsm.RSA3072, "RS256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// go-spiffe checks exp and iat against the wall clock.
			f := newFixture(t, tc.b, testConfig(tc.kt), time.Now())
			res := f.tick(t)
			if len(res.Activated) != 1 {
				t.Fatalf("first Tick activated %v, want the first key", res.Activated)
			}
			tok := f.sign(t, "spiffe://example.org/prod/payments", "https://api.example.org", "vault")
			if tok.Alg != tc.alg || tok.KeyID != res.Activated[0] {
				t.Errorf("token alg %s kid %s; want %s, %s", tok.Alg, tok.KeyID, tc.alg, res.Activated[0])
			}
			svid, err := jwtsvid.ParseAndValidate(tok.Token, f.spiffeBundle(t), []string{"vault"})
			if err != nil {
				t.Fatalf("go-spiffe ParseAndValidate: %v", err)
			}
			if svid.ID.String() != "spiffe://example.org/prod/payments" {
				t.Errorf("subject %s", svid.ID)
			}
			if !svid.Expiry.Equal(tok.Expiry) || len(svid.Audience) != 2 {
				t.Errorf("svid expiry %v audience %v; token %v", svid.Expiry, svid.Audience, tok.Expiry)
			}
			hdr := header(t, tok.Token)
			if hdr["alg"] != tc.alg || hdr["kid"] != tok.KeyID || hdr["typ"] != "JWT" {
				t.Errorf("header %v", hdr)
			}
			claims := claims(t, tok.Token)
			for _, c := range []string{"sub", "aud", "exp", "iat", "jti"} {
				if _, ok := claims[c]; !ok {
					t.Errorf("claim %s missing: %v", c, claims)
				}
			}
			if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 300 {
				t.Errorf("exp - iat = %v, want 300", exp-iat)
			}
		})
	}
}

func TestEachTokenIsAudited(t *testing.T) {
	f := newFixture(t, sqliteBackend, testConfig(hsm.ECDSAP256), time.Now())
	f.tick(t)
	tok, err := f.signer.Sign(ctxT(t), jwtkeys.Request{
		SPIFFEID: "spiffe://example.org/a", Audience: []string{"x", "y"}, TTL: time.Minute,
		RequestID: "req-1", PolicyVersion: "pv",
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := f.st.AuditEntries(ctxT(t), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	last := entries[len(entries)-1]
	if last.Action != jwtkeys.ActionJWT || last.Actor != "spiffe://example.org/a" || last.Decision != "allow" ||
		last.RequestID != "req-1" || last.PolicyVersion != "pv" || last.Target != "jwt/"+tok.JTI {
		t.Fatalf("audit entry %+v", last)
	}
	var d struct {
		Audience []string `json:"audience"`
		JTI      string   `json:"jti"`
		KID      string   `json:"kid"`
	}
	if err := json.Unmarshal(last.Details, &d); err != nil {
		t.Fatal(err)
	}
	if d.JTI != tok.JTI || d.KID != tok.KeyID || strings.Join(d.Audience, ",") != "x,y" {
		t.Errorf("audit details %s", last.Details)
	}
	if strings.Contains(string(last.Details), tok.Token) {
		t.Error("the audit entry holds the token itself")
	}
}

func TestSignRefusesBadRequests(t *testing.T) {
	f := newFixture(t, sqliteBackend, testConfig(hsm.ECDSAP256), time.Now())
	ok := jwtkeys.Request{SPIFFEID: "spiffe://example.org/a", Audience: []string{"x"}, TTL: time.Minute}
	if _, err := f.signer.Sign(ctxT(t), ok); !errors.Is(err, jwtkeys.ErrNoActiveKey) {
		t.Fatalf("before the first Tick: %v, want ErrNoActiveKey", err)
	}
	f.tick(t)
	before, _ := f.st.AuditEntries(ctxT(t), 0, 1000)
	cases := []struct {
		name   string
		mutate func(r *jwtkeys.Request)
		want   error
	}{
		{"no audience is refused", func(r *jwtkeys.Request) { r.Audience = nil }, jwtkeys.ErrInvalidRequest},
		{"an empty audience is refused", func(r *jwtkeys.Request) { r.Audience = []string{""} }, jwtkeys.ErrInvalidRequest},
		{"too many audiences are refused", func(r *jwtkeys.Request) { r.Audience = make([]string, 17) }, jwtkeys.ErrInvalidRequest},
		{"a subject that is not a SPIFFE ID is refused", func(r *jwtkeys.Request) { r.SPIFFEID = "https://example.org/a" }, jwtkeys.ErrInvalidRequest},
		{"a trust domain without a path is refused", func(r *jwtkeys.Request) { r.SPIFFEID = "spiffe://example.org" }, jwtkeys.ErrInvalidRequest},
		{"a zero lifetime is refused", func(r *jwtkeys.Request) { r.TTL = 0 }, jwtkeys.ErrInvalidRequest},
		{"a lifetime above MaxTTL is refused", func(r *jwtkeys.Request) { r.TTL = 11 * time.Minute }, jwtkeys.ErrTTLTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.mutate(&r)
			if _, err := f.signer.Sign(ctxT(t), r); !errors.Is(err, tc.want) {
				t.Errorf("Sign = %v, want %v", err, tc.want)
			}
		})
	}
	after, _ := f.st.AuditEntries(ctxT(t), 0, 1000)
	if len(after) != len(before) {
		t.Errorf("refused requests were recorded as issued: %d new entries", len(after)-len(before))
	}
}

func TestConfigIsValidated(t *testing.T) {
	f := newFixture(t, sqliteBackend, testConfig(hsm.ECDSAP256), time.Now())
	cases := []struct {
		name string
		cfg  jwtkeys.Config
	}{
		{"an unsupported key type", jwtkeys.Config{KeyType: "ed25519"}},
		{"a rotation period not longer than the publish lead", jwtkeys.Config{RotateEvery: time.Minute, PublishLead: time.Minute}},
		{"a grace shorter than the recheck", jwtkeys.Config{Grace: time.Second, Recheck: time.Minute}},
		{"a negative max TTL", jwtkeys.Config{MaxTTL: -time.Minute}},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			var ce *jwtkeys.ConfigError
			_, err := jwtkeys.NewSigner(jwtkeys.SignerDeps{Keys: f.keys, Store: f.st}, tc.cfg)
			if !errors.As(err, &ce) {
				t.Errorf("NewSigner = %v, want a *ConfigError", err)
			}
			_, err = jwtkeys.NewManager(jwtkeys.ManagerDeps{Keys: f.keys, Store: f.st, Bundles: f.pub}, tc.cfg)
			if !errors.As(err, &ce) {
				t.Errorf("NewManager = %v, want a *ConfigError", err)
			}
		})
	}
	if _, err := jwtkeys.NewManager(jwtkeys.ManagerDeps{}, jwtkeys.Config{}); err == nil {
		t.Error("a manager without dependencies was built")
	}
}

func header(t testing.TB, tok string) map[string]any {
	t.Helper()
	return segment(t, tok, 0)
}

func claims(t testing.TB, tok string) map[string]any {
	t.Helper()
	return segment(t, tok, 1)
}

func segment(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
