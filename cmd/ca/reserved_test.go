package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// reservedPolicy is a policy whose one rule grants dnsNames and spiffeID.
func reservedPolicy(spiffeID, dnsNames string) string {
	p := `trust_domain: example.org
permitted_dns_domains: ['*.internal']
token_issuers:
  - name: ci
    issuer: https://ci.example.org
    audience: ca
    jwks_url: https://ci.example.org/keys
rules:
  - name: svc
    issuer: ci
    when: "true"
    spiffe_id: '` + spiffeID + `'
    max_ttl: 1h
`
	if dnsNames != "" {
		p += "    dns_names: " + dnsNames + "\n"
	}
	return p
}

func TestPolicyTestSaysWhyAPolicyGrantingTheCAsNamesIsRefused(t *testing.T) {
	dir := t.TempDir()
	cases := filepath.Join(dir, "cases.yaml")
	writeFile(t, cases, "cases:\n  - name: svc\n    issuer: ci\n    claims: {sub: x}\n    expect: {rule: svc}\n", 0o600)
	env := config.MapEnv(map[string]string{"CA_API_URL": "https://ca.internal:8443"})
	tests := []struct {
		name, policy, args, want string
	}{
		{"the CA's API host name from CA_API_URL", reservedPolicy("spiffe://example.org/svc", "[ca.internal]"), "", `dns_names entry "ca.internal" is one of the CA's own host names`},
		{"a host name given with --ca-host", reservedPolicy("spiffe://example.org/svc", "[ca2.internal]"), "--ca-host=ca2.internal", `"ca2.internal" is one of the CA's own host names`},
		{"a SPIFFE ID under /ca/", reservedPolicy("spiffe://example.org/ca/server", ""), "", "the CA's own identities"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := filepath.Join(dir, "policy"+string(rune('a'+i))+".yaml")
			writeFile(t, pol, tt.policy, 0o600)
			args := []string{"policy", "test", pol, "--cases", cases}
			if tt.args != "" {
				args = append(args, tt.args)
			}
			var out, errOut bytes.Buffer
			code := run(context.Background(), args, env, &out, &errOut)
			if code != exitError || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d saying %q", code, errOut.String(), exitError, tt.want)
			}
		})
	}
	// The same policy without the CA's names passes.
	pol := filepath.Join(dir, "fine.yaml")
	writeFile(t, pol, reservedPolicy("spiffe://example.org/svc", "[svc.internal]"), 0o600)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"policy", "test", pol, "--cases", cases}, env, &out, &errOut); code != exitOK {
		t.Fatalf("a policy without the CA's names: exit %d\n%s%s", code, &out, &errOut)
	}
}

func TestServeRefusesAPolicyGrantingTheCAsHostName(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, pol, reservedPolicy("spiffe://example.org/svc", "[ca.internal]"), 0o600)
	cfg := config.Default()
	cfg.TrustDomain, cfg.PolicyFile, cfg.APIURL = "example.org", pol, "https://ca.internal:8443"
	_, err := loadPolicy(cfg, discardLogger(), &bytes.Buffer{})
	if !errors.Is(err, policy.ErrReservedName) {
		t.Fatalf("loadPolicy = %v, want ErrReservedName", err)
	}
}

// auditRecorder keeps the audit entries appended to it.
type auditRecorder struct {
	mu      sync.Mutex
	entries []store.AuditEntry
}

func (a *auditRecorder) AppendAudit(_ context.Context, e store.AuditEntry) (store.AuditEntry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, e)
	return e, nil
}

func TestAReloadGrantingTheCAsNamesIsRefusedAndTheOldPolicyStays(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	good := reservedPolicy("spiffe://example.org/svc", "[svc.internal]")
	writeFile(t, path, good, 0o600)
	p0, err := policy.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := &auditRecorder{}
	r := &policyReloader{setup: &policySetup{holder: policy.NewHolder(p0), path: path}, trustDomain: "example.org",
		caHosts: []string{"ca.internal", "localhost"}, audit: rec, clock: clock.Real{}, log: discardLogger()}
	for _, bad := range []string{
		reservedPolicy("spiffe://example.org/svc", "[svc.internal, CA.internal]"),
		reservedPolicy("spiffe://example.org/ca/{{claims.sub}}", ""),
	} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.reload(context.Background()); !errors.Is(err, policy.ErrReservedName) {
			t.Errorf("reload = %v, want ErrReservedName", err)
		}
		if got := r.setup.holder.Load().Version(); got != p0.Version() {
			t.Errorf("the policy changed to %s", got)
		}
	}
	if len(rec.entries) != 2 || rec.entries[0].Decision != "deny" || rec.entries[0].Reason != reasonPolicyBad ||
		!strings.Contains(string(rec.entries[0].Details), "own host names") {
		t.Errorf("audit entries %+v", rec.entries)
	}
}
