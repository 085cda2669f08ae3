package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func githubClaims(over map[string]any) map[string]any {
	c := map[string]any{
		"iss":              "https://token.actions.githubusercontent.com",
		"sub":              "repo:acme/payments:ref:refs/heads/main",
		"repository":       "acme/payments",
		"repository_owner": "acme",
		"ref":              "refs/heads/main",
		"sha":              "0123456789abcdef0123456789abcdef01234567",
		"workflow":         "deploy",
		"job_workflow_ref": "acme/payments/.github/workflows/deploy.yml@refs/heads/main",
		"run_id":           "123456789",
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func TestEvaluateGivesEachTokenShapeItsIdentity(t *testing.T) {
	p := mustLoad(t)
	tests := []struct {
		name     string
		issuer   string
		claims   map[string]any
		rule     string
		id       string
		dns      []string
		maxTTL   time.Duration
		ttl      time.Duration
		keyTypes []KeyType
	}{
		{"github main branch of payments gets the prod identity with its DNS name", "github", githubClaims(nil),
			"payments-main", "spiffe://example.org/prod/payments", []string{"payments.prod.internal"}, time.Hour, 30 * time.Minute, []KeyType{KeyECDSAP256, KeyEd25519}},
		{"github feature branch falls through to the per-repository CI identity", "github", githubClaims(map[string]any{"ref": "refs/heads/x"}),
			"any-repo-ci", "spiffe://example.org/ci/acme/payments", []string{}, 15 * time.Minute, 15 * time.Minute, DefaultKeyTypes},
		{"gitlab production deploy gets the project path identity", "gitlab",
			map[string]any{"project_path": "platform/billing", "ref": "main", "environment": "production", "pipeline_id": "77"},
			"gitlab-deploy", "spiffe://example.org/gitlab/platform/billing", []string{}, time.Hour, time.Hour, DefaultKeyTypes},
		{"kubernetes service account gets namespace and service-account identity", "k8s",
			map[string]any{"kubernetes.io": map[string]any{"namespace": "orders", "serviceaccount": map[string]any{"name": "Worker"}, "pod": map[string]any{"name": "w-1"}}},
			"k8s-workloads", "spiffe://example.org/ns/orders/sa/Worker", []string{"worker.svc.internal"}, 24 * time.Hour, time.Hour, DefaultKeyTypes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := p.Evaluate(context.Background(), tc.issuer, tc.claims)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if m.Rule != tc.rule || m.SPIFFEID != tc.id || !slices.Equal(m.DNSNames, tc.dns) {
				t.Errorf("got rule %q id %q dns %v; want %q %q %v", m.Rule, m.SPIFFEID, m.DNSNames, tc.rule, tc.id, tc.dns)
			}
			if m.MaxTTL != tc.maxTTL || m.DefaultTTL != tc.ttl || !slices.Equal(m.KeyTypes, tc.keyTypes) {
				t.Errorf("got max %v ttl %v keys %v; want %v %v %v", m.MaxTTL, m.DefaultTTL, m.KeyTypes, tc.maxTTL, tc.ttl, tc.keyTypes)
			}
			if m.PolicyVersion != p.Version() {
				t.Errorf("PolicyVersion = %q, want %q", m.PolicyVersion, p.Version())
			}
		})
	}
}

func TestEvaluateDeniesWithReasonAndRule(t *testing.T) {
	p := mustLoad(t)
	k8s := func(ns, sa string) map[string]any {
		return map[string]any{"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa}}}
	}
	tests := []struct {
		name   string
		issuer string
		claims map[string]any
		rule   string
		check  string
	}{
		{"another owner matches no rule", "github", githubClaims(map[string]any{"repository_owner": "evil", "repository": "evil/x"}), "", CheckNoRuleMatched},
		{"missing claims match no rule instead of crashing", "github", map[string]any{}, "", CheckNoRuleMatched},
		{"nil claims match no rule", "github", nil, "", CheckNoRuleMatched},
		{"a claim of the wrong type matches no rule", "github", githubClaims(map[string]any{"repository_owner": 42.0, "repository": []any{"x"}}), "", CheckNoRuleMatched},
		{"an issuer without rules matches nothing", "corp-idp", githubClaims(nil), "", CheckNoRuleMatched},
		{"an unknown issuer name matches nothing", "nope", githubClaims(nil), "", CheckNoRuleMatched},
		{"a repository climbing out with dot-dot is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "acme/../../admin"}), "any-repo-ci", CheckSPIFFEID},
		{"a repository with an encoded slash is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "a%2Fb"}), "any-repo-ci", CheckSPIFFEID},
		{"a repository with a query is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "acme/x?admin=1"}), "any-repo-ci", CheckSPIFFEID},
		{"a repository with a fragment is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "acme/x#frag"}), "any-repo-ci", CheckSPIFFEID},
		{"a repository carrying a second URI is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "x,spiffe://evil.org/y"}), "any-repo-ci", CheckSPIFFEID},
		{"a repository producing an empty segment is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "acme//x"}), "any-repo-ci", CheckSPIFFEID},
		{"a repository with a trailing slash is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "acme/"}), "any-repo-ci", CheckSPIFFEID},
		{"a repository with a leading slash is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "/acme"}), "any-repo-ci", CheckSPIFFEID},
		{"an empty repository is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": ""}), "any-repo-ci", CheckSPIFFEID},
		{"a repository with unicode is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "acme/pаyments"}), "any-repo-ci", CheckSPIFFEID},
		{"a repository with a space is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": "acme/a b"}), "any-repo-ci", CheckSPIFFEID},
		{"a missing repository after the condition matched is refused", "github", githubClaims(map[string]any{"ref": "x", "repository": nil}), "any-repo-ci", CheckSPIFFEID},
		{"a service account name with a dot cannot add DNS labels", "k8s", k8s("payments", "a.b"), "k8s-workloads", CheckDNSNames},
		{"a service account name with a slash is refused: its placeholder is one path segment", "k8s", k8s("payments", "a/b"), "k8s-workloads", CheckSPIFFEIDSegment},
		{"a namespace with dot-dot never reaches the template", "k8s", k8s("..", "api"), "", CheckNoRuleMatched},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Evaluate(context.Background(), tc.issuer, tc.claims)
			var de *DenyError
			if !errors.As(err, &de) {
				t.Fatalf("Evaluate() error = %v, want *DenyError", err)
			}
			if de.Rule != tc.rule || de.Check != tc.check {
				t.Errorf("denied by rule %q check %q (%s); want rule %q check %q", de.Rule, de.Check, de.Detail, tc.rule, tc.check)
			}
		})
	}
}

func TestEvaluateNameGuardHoldsWhateverTheRuleSays(t *testing.T) {
	// The rule's template passes load-time checks with a sample value, but a
	// claim that is a valid label still cannot leave the permitted domains:
	// here the rule puts the label under a domain the guard only half allows.
	p, err := Parse([]byte(basePolicy + `rules:
  - name: r
    issuer: github
    when: 'true'
    spiffe_id: spiffe://example.org/a
    dns_names: ['{{claims.label}}.prod.internal']
    max_ttl: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Evaluate(context.Background(), "github", map[string]any{"label": "API"})
	if err != nil || !slices.Equal(m.DNSNames, []string{"api.prod.internal"}) {
		t.Fatalf("Evaluate = %v, %v; want lower-cased api.prod.internal", m.DNSNames, err)
	}
	if err := p.CheckNames("spiffe://other.org/a", nil); err == nil {
		t.Error("CheckNames accepted a foreign trust domain")
	}
	if err := p.CheckNames("spiffe://example.org/a", []string{"a.b.prod.internal"}); err == nil {
		t.Error("CheckNames accepted a name two labels under the wildcard")
	}
	if err := p.CheckNames("spiffe://example.org/a", []string{"x.prod.internal"}); err != nil {
		t.Errorf("CheckNames refused a permitted identity: %v", err)
	}
}

func TestDNSNamesAreRefusedWithoutPermittedDomains(t *testing.T) {
	_, err := Parse([]byte(`trust_domain: example.org
token_issuers:
  - {name: github, issuer: 'https://t.example.org', audience: a}
rules:
  - {name: r, issuer: github, when: 'true', spiffe_id: 'spiffe://example.org/a', dns_names: [a.example.org], max_ttl: 1h}
`))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Parse = %v, want ErrInvalid because no DNS domain is permitted", err)
	}
}

func TestHostileConditionIsStoppedByTheCostLimit(t *testing.T) {
	p, err := Parse([]byte(basePolicy + `rules:
  - name: quadratic
    issuer: github
    when: claims.items.all(a, claims.items.all(b, claims.items.all(c, a + b + c != "zzz")))
    spiffe_id: spiffe://example.org/a
    max_ttl: 1h
  - name: fallback
    issuer: github
    when: 'true'
    spiffe_id: spiffe://example.org/fallback
    max_ttl: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	items := make([]any, 500)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	start := time.Now()
	m, err := p.Evaluate(context.Background(), "github", map[string]any{"items": items})
	elapsed := time.Since(start)
	if err != nil || m.Rule != "fallback" {
		t.Fatalf("Evaluate = %+v, %v; want the costly rule skipped and fallback matched", m, err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("hostile condition took %v; the cost limit should stop it far sooner", elapsed)
	}

	// Without a fallback, the denial says why the costly rule did not match.
	p2, err := Parse([]byte(basePolicy + `rules:
  - name: quadratic
    issuer: github
    when: claims.items.all(a, claims.items.all(b, a != b || a == b))
    spiffe_id: spiffe://example.org/a
    max_ttl: 1h
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p2.Evaluate(context.Background(), "github", map[string]any{"items": items})
	var de *DenyError
	if !errors.As(err, &de) || !strings.Contains(de.Detail, "quadratic") {
		t.Fatalf("Evaluate = %v; want a denial that names the skipped rule", err)
	}
	t.Logf("denial detail: %s", de.Detail)
}

func BenchmarkEvaluate(b *testing.B) {
	p := mustLoad(b)
	claims := githubClaims(map[string]any{"ref": "refs/heads/feature"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Evaluate(ctx, "github", claims); err != nil {
			b.Fatal(err)
		}
	}
}
