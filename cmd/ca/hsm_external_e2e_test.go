package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	gojwtsvid "github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// TestEnrollOCSPAndJWTOnExternalToken is the end-to-end run .ci/hsm makes on
// each PKCS#11 implementation (HSM_TEST_MODULE, HSM_TEST_TOKEN, HSM_TEST_PIN;
// HSM_TEST_CA_KEY_TYPE, default ecdsa-p256, is issuer.key_type, which the
// JWT-SVID and OCSP responder keys follow): `ca hsm check`, `ca init`, `ca
// serve`, /readyz ready with the OCSP and JWT keys, one enrollment, an OCSP
// answer signed by a responder key of the configured type, and a JWT-SVID
// from `ca jwt` that go-spiffe verifies against /bundle.json. Skipped
// without HSM_TEST_MODULE (`make test` runs the SoftHSM end-to-end tests).
func TestEnrollOCSPAndJWTOnExternalToken(t *testing.T) {
	module := os.Getenv("HSM_TEST_MODULE")
	if module == "" {
		t.Skip("HSM_TEST_MODULE not set: no external PKCS#11 token (make hsm-test sets one up)")
	}
	tok := hsm.PKCS11Config{Module: module, TokenLabel: os.Getenv("HSM_TEST_TOKEN"), PIN: os.Getenv("HSM_TEST_PIN")}
	kt := os.Getenv("HSM_TEST_CA_KEY_TYPE")
	if kt == "" {
		kt = string(hsm.ECDSAP256)
	}
	vars := map[string]string{"CA_PKCS11_MODULE": tok.Module, "CA_PKCS11_TOKEN": tok.TokenLabel, "CA_PKCS11_PIN": tok.PIN,
		"CA_ISSUER_KEY_TYPE": kt, "CA_DATA_DIR": t.TempDir()}
	out, errOut, code := runCA(t, vars, "hsm", "check")
	t.Logf("ca hsm check:\n%s", out)
	if code != 0 || !regexp.MustCompile(`(?m)^`+kt+` +ok: .*signed\+verified`).MatchString(out) {
		t.Fatalf("ca hsm check: exit %d\n%s\n%s", code, out, errOut)
	}

	// A key type the token lacks (HSM_TEST_UNSUPPORTED_CA_KEY_TYPE: EC on
	// opencryptoki's soft token) fails `ca hsm check` and start-up with
	// one line naming the missing mechanism, before any key is made.
	if bad := os.Getenv("HSM_TEST_UNSUPPORTED_CA_KEY_TYPE"); bad != "" {
		badVars := map[string]string{}
		for k, v := range vars {
			badVars[k] = v
		}
		badVars["CA_ISSUER_KEY_TYPE"] = bad
		out, _, code := runCA(t, badVars, "hsm", "check")
		if code != 1 || !regexp.MustCompile(`(?m)^`+bad+` +FAIL: .*CKM_`).MatchString(out) {
			t.Errorf("ca hsm check with %s: exit %d, want 1 and a FAIL line naming the mechanism:\n%s", bad, code, out)
		}
		badVars["CA_DATABASE_URL"] = testkit.PostgresURL(t)
		out, errOut, code := runCA(t, badVars, "init")
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		last := lines[len(lines)-1]
		if code == 0 || !strings.Contains(last, "CKM_") || !strings.Contains(last, "ca hsm check") {
			t.Errorf("ca init with %s: exit %d, last stderr line %q, want a failure naming the mechanism\n%s", bad, code, last, out)
		}
	}

	e := startEnrollE2EOn(t, tok, map[string]string{"CA_ISSUER_KEY_TYPE": kt})
	_, body := get(t, &http.Client{Timeout: 30 * time.Second}, e.s.publicURL+"/readyz")
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	_ = json.Unmarshal(body, &ready)
	if ready.Status != "ready" || ready.Checks["jwt_key"] != "ok" || ready.Checks["ocsp_key"] != "ok" {
		t.Fatalf("/readyz: %s", body)
	}

	key := p256(t)
	a := e.post(t, e.client, "/v1/enroll", e.oidc.GitHubToken(t, nil), server.CertRequest{CSR: string(newCSR(t, key, nil))})
	if a.status != http.StatusCreated {
		t.Fatalf("enroll: %d %s", a.status, a.problem.Detail)
	}
	leaf := leafOf(t, a)
	chainBlock, _ := pem.Decode([]byte(a.cert.Chain))
	if chainBlock == nil {
		t.Fatal("no chain")
	}
	inter, err := x509.ParseCertificate(chainBlock.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	checkKeyTypeOf(t, "intermediate", inter.PublicKey, kt)

	t.Run("OCSP answers good, signed by a responder key of the configured type", func(t *testing.T) {
		req, err := ocsp.CreateRequest(leaf, inter, nil)
		if err != nil {
			t.Fatal(err)
		}
		var parsed *ocsp.Response
		var last string
		// The responder certificate is made by the leader's publisher
		// moments after start: tryLater until then.
		testkit.EventuallyTrue(t, 60*time.Second, "a signed OCSP answer", func() bool {
			res, err := (&http.Client{Timeout: 30 * time.Second}).Post(e.s.publicURL+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
			if err != nil {
				last = err.Error()
				return false
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			parsed, err = ocsp.ParseResponseForCert(body, leaf, inter)
			if err != nil {
				last = err.Error()
			}
			return err == nil
		})
		_ = last
		if parsed.Status != ocsp.Good {
			t.Fatalf("OCSP status %d, want good", parsed.Status)
		}
		if parsed.Certificate == nil {
			t.Fatal("the OCSP answer carries no responder certificate")
		}
		checkKeyTypeOf(t, "OCSP responder", parsed.Certificate.PublicKey, kt)
	})

	t.Run("ca jwt gets a JWT-SVID that verifies against bundle.json", func(t *testing.T) {
		dir := t.TempDir()
		pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{
			"key.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), "cert.pem": []byte(a.cert.Certificate),
			"chain.pem": []byte(a.cert.Chain), "bundle.pem": e.bundle,
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out, errOut, code := runCA(t, e.vars, "jwt", "--server", e.s.apiURL, "--key", filepath.Join(dir, "key.pem"),
			"--cert", filepath.Join(dir, "cert.pem"), "--chain", filepath.Join(dir, "chain.pem"),
			"--bundle", filepath.Join(dir, "bundle.pem"), "--audience", "vault", "--json")
		if code != 0 {
			t.Fatalf("ca jwt: %d %s %s", code, out, errOut)
		}
		var got server.JWTResponse
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("ca jwt --json: %v: %s", err, out)
		}
		wantAlg := map[string]string{"ecdsa-p256": "ES256", "ecdsa-p384": "ES384", "rsa-3072": "RS256"}[kt]
		var hdr struct {
			Alg string `json:"alg"`
		}
		rawHdr, err := base64.RawURLEncoding.DecodeString(strings.Split(got.Token, ".")[0])
		if err != nil || json.Unmarshal(rawHdr, &hdr) != nil || hdr.Alg != wantAlg {
			t.Errorf("JWT-SVID header %s, want alg %s (jwt.key_type follows issuer.key_type)", rawHdr, wantAlg)
		}
		_, raw := get(t, &http.Client{Timeout: 10 * time.Second}, e.s.publicURL+"/bundle.json")
		b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString(e2eTrustDomain), raw)
		if err != nil {
			t.Fatal(err)
		}
		svid, err := gojwtsvid.ParseAndValidate(got.Token, b, []string{"vault"})
		if err != nil {
			t.Fatal(err)
		}
		if svid.ID.String() != a.cert.SPIFFEID {
			t.Errorf("subject %s, want %s", svid.ID, a.cert.SPIFFEID)
		}
	})
}

func checkKeyTypeOf(t *testing.T, what string, pub any, kt string) {
	t.Helper()
	got := ""
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		got = map[int]string{256: "ecdsa-p256", 384: "ecdsa-p384"}[p.Curve.Params().BitSize]
	case *rsa.PublicKey:
		if p.N.BitLen() == 3072 {
			got = "rsa-3072"
		}
	}
	if got != kt {
		t.Errorf("%s key is %T (%s), want %s", what, pub, got, kt)
	}
}
