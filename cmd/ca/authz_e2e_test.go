package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/authz"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

func authzE2EPolicy(mode string) string {
	return `trust_domain: ` + e2eTrustDomain + `
services:
  payments:
    identity: spiffe://` + e2eTrustDomain + `/gh/acme/payments
    mode: ` + mode + `
    endpoints:
      - name: refunds-write
        methods: [POST]
        paths: [/v1/refunds, /v1/refunds/*]
        allow: [spiffe://` + e2eTrustDomain + `/gh/acme/orders]
      - name: refunds-read
        methods: [GET]
        paths: [/v1/refunds/*]
        allow: [spiffe://` + e2eTrustDomain + `/gh/acme/*]
`
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestTheAuthzPolicyLoadsAtStartAndReloadsOnSIGHUP runs the real `ca serve`
// on Postgres and SoftHSM with authz_policy_file: a bad file refuses to
// start; at start the policy is audited with its SHA-256 as version; a bad
// file on SIGHUP is refused (audited) and the old policy still decides; a
// good one replaces it (audited) and the central decision follows it.
func TestTheAuthzPolicyLoadsAtStartAndReloadsOnSIGHUP(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	tok := testkit.SoftHSM(t)
	ci := testkit.NewOIDCIssuer(t)
	idp := testkit.NewOIDCIssuer(t, testkit.WithOIDCAudience(operatorE2EAudience))
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	writeFile(t, policyPath, operatorE2EPolicy(ci.URL, idp.URL)+`  - role: admin
    issuer: corp-idp
    when: '"pki-admins" in claims.groups'
`, 0o644)
	authzPath := filepath.Join(dir, "authz.yaml")
	cfgPath := filepath.Join(dir, "ca.yaml")
	writeFile(t, cfgPath, "enroll:\n  token_issuer_ca_file: "+issuerCAFile(t, ci, dir)+"\nauthz_policy_file: "+authzPath+"\n", 0o644)
	vars := map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATABASE_URL": dbURL, "CA_PKCS11_MODULE": tok.Module,
		"CA_PKCS11_TOKEN": tok.TokenLabel, "CA_PKCS11_PIN": tok.PIN,
		"CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": policyPath,
	}
	if out, errOut, code := runCA(t, vars, "init"); code != 0 {
		t.Fatalf("ca init: %d %s %s", code, out, errOut)
	}

	writeFile(t, authzPath, "trust_domain: "+e2eTrustDomain+"\nservices: {}\nunknown_field: 1\n", 0o644)
	if _, errOut, code := runCA(t, vars, "serve"); code == 0 || !strings.Contains(errOut, "authz_policy_file") {
		t.Fatalf("ca serve with a bad authz policy: exit %d, stderr:\n%s", code, errOut)
	}

	observe := authzE2EPolicy("observe")
	writeFile(t, authzPath, observe, 0o644)
	s := startServe(t, vars)
	bundle, roots := s.bundle(t)
	st, err := storeopen.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	router := s.openapiRouter(t)
	e := &enrollE2E{s: s, roots: roots, st: st, openapi: router}
	e.client = e.mtlsClient()
	e.waitAudit(t, "authz_policy_load", "allow")
	loadEntry := lastAudit(t, e, "authz_policy_load")
	if loadEntry.PolicyVersion != sha256Hex(observe) {
		t.Errorf("authz_policy_load version %s, want the SHA-256 of the file", loadEntry.PolicyVersion)
	}

	key := p256(t)
	a := e.post(t, e.client, "/v1/enroll", ci.GitHubToken(t, map[string]any{"repository": "acme/payments"}),
		server.CertRequest{CSR: string(newCSR(t, key, nil))})
	if a.status != http.StatusCreated {
		t.Fatalf("enroll payments: %d %+v", a.status, a.problem)
	}
	payments := e.mtlsClient(tlsPair(t, a, key))
	decide := func() authz.Decision {
		t.Helper()
		body, _ := json.Marshal(server.AuthzDecideRequest{Source: "spiffe://" + e2eTrustDomain + "/gh/acme/reporting", Method: "POST", Path: "/v1/refunds/7"})
		res, err := payments.Post(s.apiURL+"/v1/authz/decide", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("decide: %d %s", res.StatusCode, raw)
		}
		var d authz.Decision
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := decide(); d.Decision != "would_deny" || d.Reason != authz.ReasonNoWritePermission || d.Mode != "observe" || d.PolicyVersion != sha256Hex(observe) {
		t.Errorf("observe mode: %+v", d)
	}

	writeFile(t, authzPath, "trust_domain: "+e2eTrustDomain+"\nservices:\n  payments: {identity: 42}\n", 0o644)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.waitAudit(t, "authz_policy_reload", "deny")
	refused := lastAudit(t, e, "authz_policy_reload")
	if refused.Reason != reasonAuthzPolicyBad || refused.PolicyVersion != sha256Hex(observe) || !strings.Contains(string(refused.Details), "kept_version") {
		t.Errorf("refused reload entry = %+v %s", refused, refused.Details)
	}
	if d := decide(); d.Decision != "would_deny" || d.PolicyVersion != sha256Hex(observe) {
		t.Errorf("after the refused reload the old policy should still decide: %+v", d)
	}

	enforce := authzE2EPolicy("enforce")
	writeFile(t, authzPath, enforce, 0o644)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.waitAudit(t, "authz_policy_reload", "allow")
	if d := decide(); d.Decision != "deny" || d.Reason != authz.ReasonNoWritePermission || d.Mode != "enforce" || d.PolicyVersion != sha256Hex(enforce) {
		t.Errorf("after switching payments to enforce: %+v", d)
	}

	// Emergency override through `ca authz overrides`: requested by the
	// break-glass admin (client certificate), refused to the same admin,
	// approved by a second admin (IdP token); then the call is allowed.
	bundlePath := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundlePath, string(bundle), 0o644)
	glassKey := p256(t)
	glass := e.post(t, e.client, "/v1/enroll", ci.GitHubToken(t, map[string]any{"repository": "acme/ops-break-glass"}),
		server.CertRequest{CSR: string(newCSR(t, glassKey, nil))})
	if glass.status != http.StatusCreated {
		t.Fatalf("break-glass enroll: %d %+v", glass.status, glass.problem)
	}
	certPath, keyPath := filepath.Join(dir, "glass.pem"), filepath.Join(dir, "glass.key")
	writeFile(t, certPath, glass.cert.Certificate+glass.cert.Chain, 0o644)
	writeFile(t, keyPath, string(pemKey(t, glassKey)), 0o600)
	tokenPath := filepath.Join(dir, "ada.token")
	writeFile(t, tokenPath, idp.Mint(t, map[string]any{"sub": "ada", "groups": []any{"pki-admins"}}), 0o600)
	asGlass := []string{"--server", s.apiURL, "--client-cert", certPath, "--client-key", keyPath, "--ca-bundle", bundlePath}
	asAda := []string{"--server", s.apiURL, "--token-file", tokenPath, "--ca-bundle", bundlePath, "--trust-domain", e2eTrustDomain}

	out, errOut, code := runCA(t, nil, append([]string{"authz", "overrides", "request", "--source", "spiffe://" + e2eTrustDomain + "/gh/acme/reporting",
		"--service", "payments", "--endpoint", "refunds-write", "--ttl", "10m", "--reason", "incident 42", "--json"}, asGlass...)...)
	var ov server.OverrideView
	if code != 0 || json.Unmarshal([]byte(out), &ov) != nil || ov.State != "pending" {
		t.Fatalf("ca authz overrides request: %d %q %q", code, out, errOut)
	}
	if _, errOut, code := runCA(t, nil, append([]string{"authz", "overrides", "approve", ov.ID}, asGlass...)...); code != 1 || !strings.Contains(errOut, "403 forbidden") {
		t.Fatalf("self-approval: %d %q", code, errOut)
	}
	if d := decide(); d.Decision != "deny" {
		t.Errorf("a pending override changed the decision: %+v", d)
	}
	out, errOut, code = runCA(t, nil, append([]string{"authz", "overrides", "approve", ov.ID}, asAda...)...)
	if code != 0 || !strings.Contains(out, "override "+ov.ID+" active until") {
		t.Fatalf("approve by a second admin: %d %q %q", code, out, errOut)
	}
	if d := decide(); d.Decision != "allow" || d.Reason != authz.ReasonOverride || d.OverrideID != ov.ID {
		t.Errorf("with the override approved: %+v", d)
	}
	out, errOut, code = runCA(t, nil, append([]string{"authz", "overrides", "list"}, asAda...)...)
	if code != 0 || !strings.Contains(out, ov.ID) || !strings.Contains(out, "active") || !strings.Contains(out, "corp-idp:ada") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	out, errOut, code = runCA(t, nil, append([]string{"authz", "overrides", "end", ov.ID}, asGlass...)...)
	if code != 0 || !strings.Contains(out, "ended") {
		t.Fatalf("end: %d %q %q", code, out, errOut)
	}
	if d := decide(); d.Decision != "deny" {
		t.Errorf("after the override ended: %+v", d)
	}
	s.stop(t)
}

// lastAudit returns the newest audit entry with action.
func lastAudit(t *testing.T, e *enrollE2E, action string) (out store.AuditEntry) {
	t.Helper()
	entries, err := e.st.AuditEntries(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.Action == action {
			out = en
		}
	}
	return out
}
