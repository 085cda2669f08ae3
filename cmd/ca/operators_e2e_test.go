package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store"
)

const operatorE2EAudience = "workload-ca-operators"

// operatorE2EPolicy: CI jobs of acme enroll (one repository as the
// break-glass operator identity); the corp IdP's groups make operators.
func operatorE2EPolicy(ciURL, idpURL string) string {
	return `trust_domain: ` + e2eTrustDomain + `
token_issuers:
  - name: ci
    issuer: ` + ciURL + `
    audience: ` + testkit.DefaultOIDCAudience + `
  - name: corp-idp
    issuer: ` + idpURL + `
    audience: ` + operatorE2EAudience + `
rules:
  - name: break-glass
    issuer: ci
    when: claims.repository == "acme/ops-break-glass"
    spiffe_id: spiffe://` + e2eTrustDomain + `/ops/break-glass
    max_ttl: 1h
  - name: github-acme
    issuer: ci
    when: claims.repository_owner == "acme"
    spiffe_id: spiffe://` + e2eTrustDomain + `/gh/{{claims.repository|path}}
    max_ttl: 1h
roles:
  - role: auditor
    issuer: corp-idp
    when: '"pki-auditors" in claims.groups'
  - role: revoker
    issuer: corp-idp
    when: '"pki-revokers" in claims.groups'
  - role: admin
    client_spiffe_id: spiffe://` + e2eTrustDomain + `/ops/break-glass
`
}

// TestOperatorsRevokeAndReadTheInventoryEndToEnd runs the real `ca serve` on
// Postgres and SoftHSM: leaves enrolled through /v1/enroll are revoked over
// REST by a revoker, by `ca revoke` with a token and a pinned fingerprint,
// and by `ca revoke` with a break-glass client certificate; the inventory and
// the audit log show it all, and refusals are audited.
func TestOperatorsRevokeAndReadTheInventoryEndToEnd(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	tok := testkit.SoftHSM(t)
	ci := testkit.NewOIDCIssuer(t)
	idp := testkit.NewOIDCIssuer(t, testkit.WithOIDCAudience(operatorE2EAudience))
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	writeFile(t, policyPath, operatorE2EPolicy(ci.URL, idp.URL), 0o644)
	cfgPath := filepath.Join(dir, "ca.yaml")
	// httptest servers share one certificate: one CA file trusts both issuers.
	writeFile(t, cfgPath, "enroll:\n  token_issuer_ca_file: "+issuerCAFile(t, ci, dir)+"\n", 0o644)
	vars := map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATABASE_URL": dbURL, "CA_PKCS11_MODULE": tok.Module,
		"CA_PKCS11_TOKEN": tok.TokenLabel, "CA_PKCS11_PIN": tok.PIN,
		"CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": policyPath,
	}
	if out, errOut, code := runCA(t, vars, "init"); code != 0 {
		t.Fatalf("ca init: %d %s %s", code, out, errOut)
	}
	s := startServe(t, vars)
	bundle, roots := s.bundle(t)
	bundlePath := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundlePath, string(bundle), 0o644)
	rootFP := rootFingerprint(t, bundle)
	router := s.openapiRouter(t)
	e := &enrollE2E{s: s, roots: roots, openapi: router}
	e.client = e.mtlsClient()

	enrollLeaf := func(repo string) (answer, *x509.Certificate) {
		t.Helper()
		key := p256(t)
		a := e.post(t, e.client, "/v1/enroll", ci.GitHubToken(t, map[string]any{"repository": repo}), server.CertRequest{CSR: string(newCSR(t, key, nil))})
		if a.status != 201 {
			t.Fatalf("enroll %s: %d %+v", repo, a.status, a.problem)
		}
		return a, leafOf(t, a)
	}
	first, _ := enrollLeaf("acme/payments")
	second, _ := enrollLeaf("acme/ledger")
	third, _ := enrollLeaf("acme/search")
	glassKey := p256(t)
	glass := e.post(t, e.client, "/v1/enroll", ci.GitHubToken(t, map[string]any{"repository": "acme/ops-break-glass"}),
		server.CertRequest{CSR: string(newCSR(t, glassKey, nil))})
	if glass.status != 201 || glass.cert.SPIFFEID != "spiffe://"+e2eTrustDomain+"/ops/break-glass" {
		t.Fatalf("break-glass enroll: %d %+v", glass.status, glass)
	}

	revoker := idp.Mint(t, map[string]any{"sub": "rita", "groups": []any{"pki-revokers"}})
	auditor := idp.Mint(t, map[string]any{"sub": "audrey", "groups": []any{"pki-auditors"}})
	call := func(token, method, path, body string) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, s.apiURL+path, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if body != "" {
			req.Body = io.NopCloser(strings.NewReader(body))
		}
		e.validate(t, req, res, raw)
		return res.StatusCode, raw
	}

	// REST, as a revoker; again reports the first revocation.
	status, raw := call(revoker, "POST", "/v1/certificates/"+first.cert.Serial+"/revoke", `{"reason":"keyCompromise"}`)
	var rr server.RevokeResponse
	_ = json.Unmarshal(raw, &rr)
	if status != 200 || rr.AlreadyRevoked || rr.Certificate.Status != store.CertRevoked {
		t.Fatalf("revoke: %d %s", status, raw)
	}
	status, raw = call(revoker, "POST", "/v1/certificates/"+first.cert.Serial+"/revoke", `{"reason":"superseded"}`)
	_ = json.Unmarshal(raw, &rr)
	if status != 200 || !rr.AlreadyRevoked || rr.Certificate.RevocationReason != "keyCompromise" {
		t.Fatalf("revoke again: %d %s", status, raw)
	}
	// Refusals: anonymous, and an auditor (who may not revoke).
	if status, raw := call("", "POST", "/v1/certificates/"+second.cert.Serial+"/revoke", `{"reason":"superseded"}`); status != 401 {
		t.Fatalf("anonymous revoke: %d %s", status, raw)
	}
	if status, raw := call(auditor, "POST", "/v1/certificates/"+second.cert.Serial+"/revoke", `{"reason":"superseded"}`); status != 403 {
		t.Fatalf("auditor revoke: %d %s", status, raw)
	}

	// `ca revoke` with a token file, the API verified by a pinned root.
	tokenPath := filepath.Join(dir, "operator.jwt")
	writeFile(t, tokenPath, revoker+"\n", 0o600)
	args := []string{"revoke", strings.ToUpper(second.cert.Serial), "--reason", "cessationOfOperation", "--server", s.apiURL,
		"--token-file", tokenPath, "--ca-fingerprint", rootFP}
	out, errOut, code := runCA(t, nil, args...)
	if code != 0 || !strings.HasPrefix(out, "revoked "+second.cert.Serial+" (cessationOfOperation)") {
		t.Fatalf("ca revoke: %d %q %q", code, out, errOut)
	}
	out, errOut, code = runCA(t, nil, args...)
	if code != 0 || !strings.Contains(out, "already revoked") {
		t.Fatalf("ca revoke again: %d %q %q", code, out, errOut)
	}
	// A wrong pin is refused before anything is sent.
	bad := append([]string(nil), args...)
	bad[len(bad)-1] = "sha256:" + strings.Repeat("ab", 32)
	if out, errOut, code := runCA(t, nil, bad...); code != 1 || !strings.Contains(errOut, "pinned") {
		t.Fatalf("ca revoke with a wrong pin: %d %q %q", code, out, errOut)
	}
	// An auditor's token is refused with the CA's reason.
	auditorPath := filepath.Join(dir, "auditor.jwt")
	writeFile(t, auditorPath, auditor, 0o600)
	if out, errOut, code := runCA(t, nil, "revoke", third.cert.Serial, "--reason", "superseded", "--server", s.apiURL,
		"--token-file", auditorPath, "--ca-bundle", bundlePath); code != 1 || !strings.Contains(errOut, "403 forbidden") {
		t.Fatalf("ca revoke as an auditor: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := runCA(t, nil, "revoke", third.cert.Serial, "--reason", "certificateHold", "--server", s.apiURL,
		"--token-file", tokenPath, "--ca-bundle", bundlePath); code != 2 {
		t.Fatalf("ca revoke with a bad reason: %d %q", code, errOut)
	}

	// `ca revoke` with the break-glass client certificate (admin).
	certPath, keyPath := filepath.Join(dir, "glass.pem"), filepath.Join(dir, "glass.key")
	writeFile(t, certPath, glass.cert.Certificate+glass.cert.Chain, 0o644)
	writeFile(t, keyPath, string(pemKey(t, glassKey)), 0o600)
	out, errOut, code = runCA(t, nil, "revoke", third.cert.Serial, "--reason", "privilegeWithdrawn", "--server", s.apiURL,
		"--client-cert", certPath, "--client-key", keyPath, "--ca-bundle", bundlePath, "--json")
	if code != 0 {
		t.Fatalf("ca revoke with a client certificate: %d %q %q", code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &rr); err != nil || rr.AlreadyRevoked || rr.Certificate.RevocationReason != "privilegeWithdrawn" {
		t.Fatalf("ca revoke --json printed %q (%v)", out, err)
	}

	// The inventory shows the three revoked leaves, by identity (an
	// identity_prefix query: ledger, payments, search), and the detail of
	// one of them.
	status, raw = call(auditor, "GET", "/v1/certificates?status=revoked&identity_prefix=spiffe://"+e2eTrustDomain+"/gh/", "")
	var page server.CertificatePage
	_ = json.Unmarshal(raw, &page)
	var got []string
	for _, c := range page.Items {
		got = append(got, c.Serial+":"+c.RevocationReason)
	}
	want := []string{second.cert.Serial + ":cessationOfOperation", first.cert.Serial + ":keyCompromise", third.cert.Serial + ":privilegeWithdrawn"}
	if status != 200 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("revoked inventory: %d %v, want %v", status, got, want)
	}
	status, raw = call(auditor, "GET", "/v1/certificates/"+first.cert.Serial, "")
	var detail server.CertificateView
	_ = json.Unmarshal(raw, &detail)
	var prov map[string]any
	_ = json.Unmarshal(detail.Provenance, &prov)
	if status != 200 || detail.Status != store.CertRevoked || detail.PolicyRule != "github-acme" || prov["sub"] != "repo:acme/payments:ref:refs/heads/main" {
		t.Fatalf("detail: %d %s", status, raw)
	}

	// The audit log has the three revocations with their actors, and the two
	// refusals.
	status, raw = call(auditor, "GET", "/v1/audit?action=revoke", "")
	var audit server.AuditPage
	_ = json.Unmarshal(raw, &audit)
	var actors []string
	for _, en := range audit.Items {
		actors = append(actors, en.Target+" by "+en.Actor)
	}
	wantActors := []string{first.cert.Serial + " by corp-idp:rita", second.cert.Serial + " by corp-idp:rita",
		third.cert.Serial + " by spiffe://" + e2eTrustDomain + "/ops/break-glass"}
	if status != 200 || strings.Join(actors, ",") != strings.Join(wantActors, ",") {
		t.Fatalf("revocations in the audit log: %d %v, want %v", status, actors, wantActors)
	}
	status, raw = call(auditor, "GET", "/v1/audit?action=authz&decision=deny", "")
	_ = json.Unmarshal(raw, &audit)
	var denials []string
	for _, en := range audit.Items {
		denials = append(denials, en.Actor+" "+en.Reason)
	}
	if status != 200 || !strings.Contains(strings.Join(denials, ","), "anonymous unauthorized") || !strings.Contains(strings.Join(denials, ","), "corp-idp:audrey forbidden") {
		t.Fatalf("denials in the audit log: %d %v", status, denials)
	}
	s.stop(t)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// rootFingerprint is the pin of the first root in a PEM bundle.
func rootFingerprint(t *testing.T, bundle []byte) string {
	t.Helper()
	b, _ := pem.Decode(bundle)
	if b == nil {
		t.Fatal("empty bundle")
	}
	sum := sha256.Sum256(b.Bytes)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func pemKey(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
