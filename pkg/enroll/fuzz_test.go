package enroll

import (
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/policy"
)

// The fuzz targets verify against a fixed test-only key (testdata/fuzz_key.json)
// at a fixed time, so that the committed seed tokens stay valid forever.
const fuzzIssuer = "https://fuzz.example.org"

var fuzzNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var knownReasons = map[string]bool{
	ReasonTokenMalformed: true, ReasonTokenExpired: true, ReasonTokenNotYetValid: true, ReasonTokenBadSignature: true,
	ReasonTokenUnknownIssuer: true, ReasonTokenWrongAudience: true, ReasonTokenIssuerUnavailable: true,
	ReasonCSRMalformed: true, ReasonCSRBadSignature: true, ReasonCSRWeakKey: true, ReasonCSRForbiddenExtension: true,
}

func fuzzKey(t testing.TB) jose.JSONWebKey {
	t.Helper()
	raw, err := os.ReadFile("testdata/fuzz_key.json")
	if err != nil {
		t.Fatal(err)
	}
	var k jose.JSONWebKey
	if err := json.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

func fuzzVerifier(t testing.TB) (*Verifier, *policy.Policy) {
	t.Helper()
	k := fuzzKey(t)
	pub, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`trust_domain: example.org
token_issuers:
  - {name: fuzz, issuer: %q, audience: ca, jwks_file: jwks.json}
`, fuzzIssuer)
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.LoadFile(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return NewVerifier(clock.NewFake(fuzzNow)), pol
}

func fuzzToken(t testing.TB, claims map[string]any, alg jose.SignatureAlgorithm) string {
	k := fuzzKey(t)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]any{"iss": fuzzIssuer, "aud": "ca", "sub": "s", "iat": fuzzNow.Unix(), "exp": fuzzNow.Add(time.Hour).Unix(), "jti": "j"}
	for k, v := range claims {
		if v == nil {
			delete(base, k)
			continue
		}
		base[k] = v
	}
	tok, err := jwt.Signed(s).Claims(base).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func FuzzVerifyToken(f *testing.F) {
	v, pol := fuzzVerifier(f)
	v2, _ := fuzzVerifier(f)
	f.Add(fuzzToken(f, nil, jose.ES256))
	f.Add(fuzzToken(f, map[string]any{"jti": nil}, jose.ES256))
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := v.Verify(context.Background(), pol, raw)
		if err == nil {
			if tok.Issuer != fuzzIssuer || tok.Claims == nil || tok.ReplayKey == "" {
				t.Fatalf("accepted token is incomplete: %+v", tok)
			}
			// Whatever re-encoding of an accepted token also verifies is
			// the same token to replay protection.
			for _, v := range reencodings(raw) {
				if again, err := v2.Verify(context.Background(), pol, v); err == nil && again.ReplayKey != tok.ReplayKey {
					t.Fatalf("a re-encoding of an accepted token has another replay key:\n%s\n%s", raw, v)
				}
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || !knownReasons[e.Reason] {
			t.Fatalf("Verify error %v (%T) has no known reason", err, err)
		}
		if len(raw) > 200 && strings.Contains(err.Error(), raw) {
			t.Fatal("error message contains the token")
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	f.Add(newCSR(f, csrOpts{dns: []string{"a.prod.internal"}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err == nil {
			if _, kerr := KeyTypeOf(csr.PublicKey); kerr != nil {
				t.Fatalf("accepted a CSR whose key is refused: %v", kerr)
			}
			if csr.CheckSignature() != nil {
				t.Fatal("accepted a CSR whose signature does not verify")
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || !knownReasons[e.Reason] || !strings.HasPrefix(e.Reason, "csr_") {
			t.Fatalf("ParseCSR error %v (%T) has no csr_ reason", err, err)
		}
	})
}

// TestWriteFuzzSeeds regenerates the committed seed corpora when
// ENROLL_WRITE_FUZZ_SEEDS=1; otherwise it is skipped. The seeds are replayed
// by every plain `go test` run.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ENROLL_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set ENROLL_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz seeds")
	}
	write := func(target, name, typ, value string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + typ + "(" + value + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	q := strconv.Quote
	noJTI := fuzzToken(t, map[string]any{"jti": nil}, jose.ES256)
	tokens := map[string]string{
		"valid-es256":     fuzzToken(t, nil, jose.ES256),
		"expired":         fuzzToken(t, map[string]any{"exp": fuzzNow.Add(-time.Hour).Unix()}, jose.ES256),
		"wrong-audience":  fuzzToken(t, map[string]any{"aud": []string{"x", "y"}}, jose.ES256),
		"nested-claims":   fuzzToken(t, map[string]any{"kubernetes.io": map[string]any{"namespace": "a", "pod": map[string]any{"name": "p"}}}, jose.ES256),
		"string-exp":      fuzzToken(t, map[string]any{"exp": "soon"}, jose.ES256),
		"alg-none":        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2Z1enouZXhhbXBsZS5vcmcifQ.",
		"garbage":         "a.b.c",
		"no-jti":          noJTI,
		"no-jti-high-s":   mustReencode(t, noJTI, testkit.HighS),
		"no-jti-sig-bits": mustReencode(t, noJTI, func(tok string) (string, bool) { return testkit.OtherUnusedBits(tok, 2) }),
		"empty":           "",
		"json":            `{"payload":"x","signatures":[]}`,
	}
	for name, tok := range tokens {
		write("FuzzVerifyToken", name, "string", q(tok))
	}
	weak, strong := rsaKeys(t)
	csrs := map[string][]byte{
		"p256":     newCSR(t, csrOpts{dns: []string{"a.prod.internal"}, uris: []string{"spiffe://example.org/a"}}),
		"rsa2048":  newCSR(t, csrOpts{key: strong}),
		"rsa1024":  newCSR(t, csrOpts{key: weak}),
		"ca-true":  newCSR(t, csrOpts{extra: []pkix.Extension{basicConstraints(t, true, true)}}),
		"garbage":  []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
		"empty":    nil,
		"two-pems": append(newCSR(t, csrOpts{}), newCSR(t, csrOpts{})...),
	}
	for name, c := range csrs {
		write("FuzzParseCSR", name, "[]byte", q(string(c)))
	}
}

// reencodings are the re-encodings of raw that testkit knows, which may
// verify as well as raw does.
func reencodings(raw string) []string {
	var out []string
	if v, ok := testkit.HighS(raw); ok {
		out = append(out, v)
	}
	for i := range 3 {
		if v, ok := testkit.OtherUnusedBits(raw, i); ok {
			out = append(out, v)
		}
	}
	return out
}

func mustReencode(t *testing.T, tok string, re func(string) (string, bool)) string {
	t.Helper()
	v, ok := re(tok)
	if !ok {
		t.Fatal("cannot re-encode the seed token")
	}
	return v
}

func TestFuzzFixtureAcceptsTheValidSeed(t *testing.T) {
	v, pol := fuzzVerifier(t)
	if _, err := v.Verify(context.Background(), pol, fuzzToken(t, nil, jose.ES256)); err != nil {
		t.Fatalf("the fuzz fixture refuses a valid token (%v), so fuzzing would only reach failure paths", err)
	}
}
