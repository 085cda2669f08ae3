package policy

import (
	"context"
	"errors"
	"testing"
	"time"
)

const renewalPolicy = basePolicy + `rules:
  - name: payments
    issuer: github
    when: claims.repository == "acme/payments" && claims.ref == "refs/heads/main"
    spiffe_id: spiffe://example.org/prod/{{claims.repository|path}}
    dns_names: [payments.prod.internal, api.prod.internal]
    max_ttl: 1h
    reauthenticate_after: 72h
  - name: other
    issuer: github
    when: 'true'
    spiffe_id: spiffe://example.org/ci/x
    max_ttl: 15m
`

func TestRenewalSettings(t *testing.T) {
	p, err := Parse([]byte(renewalPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if p.OnReuse() != OnReuseDeny {
		t.Errorf("on_reuse defaults to %q, want deny", p.OnReuse())
	}
	if ri, _ := p.Rule("payments"); ri.ReauthenticateAfter != 72*time.Hour {
		t.Errorf("payments reauthenticate_after %s, want 72h", ri.ReauthenticateAfter)
	}
	if ri, _ := p.Rule("other"); ri.ReauthenticateAfter != DefaultReauthenticateAfter {
		t.Errorf("other reauthenticate_after %s, want the default %s", ri.ReauthenticateAfter, DefaultReauthenticateAfter)
	}
	p, err = Parse([]byte(renewalPolicy + "renewal:\n  on_reuse: revoke_lineage\n"))
	if err != nil || p.OnReuse() != OnReuseRevokeLineage {
		t.Errorf("on_reuse revoke_lineage: %v, %v", p.OnReuse(), err)
	}
}

func TestRecheck(t *testing.T) {
	p, err := Parse([]byte(renewalPolicy))
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"repository": "acme/payments", "ref": "refs/heads/main"}
	id := "spiffe://example.org/prod/acme/payments"
	tests := []struct {
		name      string
		rule, iss string
		claims    map[string]any
		id        string
		dns       []string
		check     string // "" for allowed
	}{
		{"the same rule, claims and identity are allowed", "payments", "github", claims, id, []string{"payments.prod.internal"}, ""},
		{"a certificate holding every granted name is allowed", "payments", "github", claims, id, []string{"API.prod.internal", "payments.prod.internal"}, ""},
		{"a removed rule is refused with rule_removed", "gone", "github", claims, id, nil, CheckRuleRemoved},
		{"another token issuer is refused with rule_issuer", "payments", "gitlab", claims, id, nil, CheckRuleIssuer},
		{"claims the when no longer accepts are refused with when", "payments", "github",
			map[string]any{"repository": "acme/payments", "ref": "refs/heads/dev"}, id, nil, CheckCondition},
		{"claims missing a field the when reads are refused with when", "payments", "github",
			map[string]any{"repository": "acme/payments"}, id, nil, CheckCondition},
		{"another SPIFFE ID is refused with identity_changed", "payments", "github", claims, "spiffe://example.org/prod/old", nil, CheckIdentityChanged},
		{"a DNS name no longer granted is refused with identity_changed", "payments", "github", claims, id, []string{"old.prod.internal"}, CheckIdentityChanged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := p.Recheck(context.Background(), tc.rule, tc.iss, tc.claims, tc.id, tc.dns)
			if tc.check == "" {
				if err != nil || m.Rule != tc.rule || m.SPIFFEID != tc.id {
					t.Fatalf("Recheck = %+v, %v; want an allowed match", m, err)
				}
				return
			}
			var de *DenyError
			if !errors.As(err, &de) || de.Check != tc.check {
				t.Fatalf("Recheck error %v, want a DenyError with check %s", err, tc.check)
			}
		})
	}
}
