package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	gojwtsvid "github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/jwtsvid"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// TestJWTSVIDEndToEndOnPostgresAndSoftHSM runs the real binary: a workload
// enrolls, gets a JWT-SVID with `ca jwt`, and an outside relying party
// verifies it (go-spiffe and pkg/jwtsvid) against /bundle.json; the X.509
// side checks with go-spiffe too; an emergency `ca jwt-keys rotate` makes
// the old key's tokens fail once the key has left the bundle.
func TestJWTSVIDEndToEndOnPostgresAndSoftHSM(t *testing.T) {
	e := startEnrollE2E(t)
	td := spiffeid.RequireTrustDomainFromString(e2eTrustDomain)
	key := p256(t)
	a := e.post(t, e.client, "/v1/enroll", e.oidc.GitHubToken(t, nil), server.CertRequest{CSR: string(newCSR(t, key, nil))})
	if a.status != http.StatusCreated {
		t.Fatalf("enroll: %d %s", a.status, a.problem.Detail)
	}
	dir := t.TempDir()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	files := map[string][]byte{"key.pem": keyPEM, "cert.pem": []byte(a.cert.Certificate), "chain.pem": []byte(a.cert.Chain), "bundle.pem": e.bundle}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	jwtArgs := func(extra ...string) []string {
		return append([]string{"jwt", "--server", e.s.apiURL, "--key", filepath.Join(dir, "key.pem"),
			"--cert", filepath.Join(dir, "cert.pem"), "--chain", filepath.Join(dir, "chain.pem"),
			"--bundle", filepath.Join(dir, "bundle.pem")}, extra...)
	}
	fetchBundle := func(t *testing.T) *spiffebundle.Bundle {
		t.Helper()
		_, raw := get(t, &http.Client{Timeout: 10 * time.Second}, e.s.publicURL+"/bundle.json")
		b, err := spiffebundle.Parse(td, raw)
		if err != nil {
			t.Fatalf("bundle.json is not a SPIFFE bundle: %v", err)
		}
		return b
	}

	out, errOut, code := runCA(t, e.vars, jwtArgs("--audience", "vault", "--audience", "https://api.example.org", "--json")...)
	if code != 0 {
		t.Fatalf("ca jwt: %d %s %s", code, out, errOut)
	}
	var got server.JWTResponse
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("ca jwt --json: %v: %s", err, out)
	}
	b := fetchBundle(t)

	t.Run("the token verifies with go-spiffe as an outside relying party would", func(t *testing.T) {
		svid, err := gojwtsvid.ParseAndValidate(got.Token, b, []string{"vault"})
		if err != nil {
			t.Fatal(err)
		}
		if svid.ID.String() != a.cert.SPIFFEID || got.SPIFFEID != a.cert.SPIFFEID {
			t.Errorf("subject %s, want %s", svid.ID, a.cert.SPIFFEID)
		}
		if d := time.Until(svid.Expiry); d > 5*time.Minute || d < 4*time.Minute {
			t.Errorf("lifetime %s, want the default 5m", d)
		}
	})
	t.Run("the token verifies with pkg/jwtsvid fetching bundle.json", func(t *testing.T) {
		src, err := jwtsvid.NewHTTPSource(jwtsvid.HTTPSourceConfig{URL: e.s.publicURL + "/bundle.json", TrustDomain: td})
		if err != nil {
			t.Fatal(err)
		}
		v, err := jwtsvid.NewVerifier(jwtsvid.Config{TrustDomain: td, Source: src})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), got.Token, "https://api.example.org"); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), got.Token, "billing"); jwtsvid.ReasonOf(err) != jwtsvid.ReasonWrongAudience {
			t.Errorf("wrong audience: %v", err)
		}
	})
	t.Run("the issuance is audited with audiences, jti and kid", func(t *testing.T) {
		entries, err := e.st.AuditEntries(context.Background(), 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, en := range entries {
			if en.Action == jwtkeys.ActionJWT && en.Decision == "allow" && en.Actor == a.cert.SPIFFEID {
				found = strings.Contains(string(en.Details), got.KeyID) && strings.Contains(string(en.Details), "vault")
			}
		}
		if !found {
			t.Error("no jwt audit entry with the kid and audiences")
		}
	})
	t.Run("the X.509 side checks with go-spiffe", func(t *testing.T) {
		var certs []byte
		certs = append(certs, leafOf(t, a).Raw...)
		for rest := []byte(a.cert.Chain); ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			certs = append(certs, blk.Bytes...)
		}
		svid, err := x509svid.ParseRaw(certs, pkcs8)
		if err != nil {
			t.Fatalf("x509svid.ParseRaw refuses our leaf: %v", err)
		}
		if svid.ID.String() != a.cert.SPIFFEID {
			t.Errorf("x509svid ID %s", svid.ID)
		}
		if _, _, err := x509svid.Verify(svid.Certificates, b); err != nil {
			t.Errorf("x509svid.Verify against bundle.json: %v", err)
		}
	})
	t.Run("after an emergency rotation the old key's token fails", func(t *testing.T) {
		if out, errOut, code := runCA(t, e.vars, "jwt-keys", "rotate", "--emergency", "--actor", "ops@example.org"); code != 0 {
			t.Fatalf("ca jwt-keys rotate --emergency: %d %s %s", code, out, errOut)
		}
		// The serving cache rechecks the store every few seconds.
		var after *spiffebundle.Bundle
		testkit.EventuallyTrue(t, 30*time.Second, "the retired key gone from bundle.json", func() bool {
			after = fetchBundle(t)
			return !after.HasJWTAuthority(got.KeyID)
		})
		if _, err := gojwtsvid.ParseAndValidate(got.Token, after, []string{"vault"}); err == nil {
			t.Error("go-spiffe still accepts the old key's token")
		}
		v, err := jwtsvid.NewVerifier(jwtsvid.Config{TrustDomain: td, Source: jwtsvid.NewStaticSource(after)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), got.Token, "vault"); jwtsvid.ReasonOf(err) != jwtsvid.ReasonUnknownKid {
			t.Errorf("old token: %v, want unknown_kid", err)
		}
		// The serving replica picks up the new key within its recheck.
		testkit.Eventually(t, 30*time.Second, "the server signing with the new key", func() error {
			out, errOut, code := runCA(t, e.vars, jwtArgs("--audience", "vault")...)
			if code != 0 {
				t.Fatalf("ca jwt after the rotation: %d %s", code, errOut)
			}
			_, err := gojwtsvid.ParseAndValidate(strings.TrimSpace(out), after, []string{"vault"})
			return err
		})
		out, _, code := runCA(t, e.vars, "jwt-keys", "list")
		if code != 0 || !strings.Contains(out, "retired") || !strings.Contains(out, "active") {
			t.Errorf("ca jwt-keys list: %s", out)
		}
	})
}
