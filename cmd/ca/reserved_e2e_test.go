package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// TestTheCARefusesItsOwnNamesToWorkloadsAtIssuance runs the real binary
// (SQLite and software keys, with a policy file) whose public URL's host is
// pub.ca.internal, under a policy whose templates let a token's claims pick
// the DNS name and the SPIFFE ID path. No rule shows a CA name, so the
// policy loads; the claims that would produce one are refused at issuance
// with 403 policy_denied and the check in the audit entry.
func TestTheCARefusesItsOwnNamesToWorkloadsAtIssuance(t *testing.T) {
	oidc := testkit.NewOIDCIssuer(t)
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	writeFile(t, policyPath, `trust_domain: example.org
permitted_dns_domains: ['*.ca.internal']
token_issuers:
  - name: ci
    issuer: `+oidc.URL+`
    audience: `+testkit.DefaultOIDCAudience+`
rules:
  - name: picked
    issuer: ci
    when: has(claims.a)
    spiffe_id: spiffe://example.org/{{claims.a}}/{{claims.b}}
    dns_names: ['{{claims.host}}.ca.internal']
    max_ttl: 1h
`, 0o644)
	cfgPath := filepath.Join(dir, "ca.yaml")
	writeFile(t, cfgPath, "enroll:\n  token_issuer_ca_file: "+issuerCAFile(t, oidc, dir)+"\n", 0o644)
	vars := map[string]string{
		"CA_CONFIG": cfgPath, "CA_DATA_DIR": filepath.Join(dir, "data"), "CA_POLICY_FILE": policyPath,
		"CA_PUBLIC_URL": "http://pub.ca.internal:8080",
	}
	e := &enrollE2E{dir: dir, oidc: oidc, policyPath: policyPath, vars: vars}
	e.s = startServe(t, vars)
	e.bundle, e.roots = e.s.bundle(t)
	e.client = e.mtlsClient()
	st, err := storeopen.Open(context.Background(), "sqlite:"+filepath.Join(dir, "data", "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	e.openapi = e.s.openapiRouter(t)

	enroll := func(claims map[string]any) answer {
		return e.post(t, e.client, "/v1/enroll", oidc.GitHubToken(t, claims),
			server.CertRequest{CSR: string(newCSR(t, p256(t), nil))})
	}
	webKey := p256(t)
	web := e.post(t, e.client, "/v1/enroll", oidc.GitHubToken(t, map[string]any{"a": "svc", "b": "web", "host": "web"}),
		server.CertRequest{CSR: string(newCSR(t, webKey, nil))})
	if web.status != http.StatusCreated || web.cert.SPIFFEID != "spiffe://example.org/svc/web" {
		t.Fatalf("an ordinary identity: %d %+v", web.status, web.problem)
	}
	tests := []struct {
		name   string
		claims map[string]any
		check  string
	}{
		{"the CA's public host name is refused", map[string]any{"a": "svc", "b": "web", "host": "pub"}, "ca_reserved_dns_name"},
		{"the CA's server SPIFFE ID is refused", map[string]any{"a": "ca", "b": "server", "host": "web"}, "ca_reserved_spiffe_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := enroll(tt.claims)
			if a.status != http.StatusForbidden || a.problem.Reason != server.ReasonPolicyDenied {
				t.Fatalf("got %d %+v, want 403 policy_denied", a.status, a.problem)
			}
			en, ok := e.denial(t, a.requestID)
			if !ok {
				t.Fatal("the denial is not in the audit log")
			}
			var details map[string]string
			_ = json.Unmarshal(en.Details, &details)
			if en.Reason != "policy_denied" || details["check"] != tt.check || details["rule"] != "picked" {
				t.Errorf("audit entry %+v details %v; want check %s", en, details, tt.check)
			}
		})
	}

	// The CA moves its public URL to the name the workload holds: renewing
	// that certificate would hand the CA's host name to a workload.
	e.s.stop(t)
	vars["CA_PUBLIC_URL"] = "http://web.ca.internal:8080"
	e.s = startServe(t, vars)
	e.openapi = e.s.openapiRouter(t)
	t.Run("a renewal carrying a name the CA now uses is refused", func(t *testing.T) {
		a := e.post(t, e.mtlsClient(tlsPair(t, web, webKey)), "/v1/renew", "", server.CertRequest{CSR: string(newCSR(t, p256(t), nil))})
		if a.status != http.StatusForbidden || a.problem.Reason != server.ReasonPolicyDenied {
			t.Fatalf("renewal: %d %+v, want 403 policy_denied", a.status, a.problem)
		}
		en, ok := e.denial(t, a.requestID)
		var details map[string]string
		_ = json.Unmarshal(en.Details, &details)
		if !ok || en.Action != "renew" || details["check"] != "ca_reserved_dns_name" || details["reserved_name"] != "web.ca.internal" {
			t.Errorf("audit entry %+v details %v", en, details)
		}
	})
	// A reload whose rule shows the CA's (new) public host name is refused
	// by the running server; the old policy stays and still enrolls.
	t.Run("a SIGHUP reload granting the CA's host name is refused and the old policy stays", func(t *testing.T) {
		writeFile(t, policyPath, `trust_domain: example.org
permitted_dns_domains: ['*.ca.internal']
token_issuers:
  - name: ci
    issuer: `+oidc.URL+`
    audience: `+testkit.DefaultOIDCAudience+`
rules:
  - name: grabs-the-ca
    issuer: ci
    when: "true"
    spiffe_id: spiffe://example.org/svc/grab
    dns_names: [WEB.ca.internal]
    max_ttl: 1h
`, 0o644)
		if err := e.s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		e.waitAudit(t, "policy_reload", "deny")
		entries, err := e.st.AuditEntries(context.Background(), 0, 10000)
		if err != nil {
			t.Fatal(err)
		}
		var saysWhy bool
		for _, en := range entries {
			saysWhy = saysWhy || (en.Action == "policy_reload" && en.Decision == "deny" &&
				strings.Contains(string(en.Details), "one of the CA's own host names"))
		}
		if !saysWhy {
			t.Error("the refused reload's audit entry does not say why")
		}
		a := enroll(map[string]any{"a": "svc", "b": "api", "host": "api"})
		if a.status != http.StatusCreated || a.cert.SPIFFEID != "spiffe://example.org/svc/api" {
			t.Fatalf("the old policy after the refused reload: %d %+v", a.status, a.problem)
		}
	})
}
