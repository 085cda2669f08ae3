package policy

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func segmentPolicy(t *testing.T, spiffeID string, dns ...string) (*Policy, error) {
	t.Helper()
	doc := basePolicy + `rules:
  - name: r
    issuer: github
    when: "true"
    spiffe_id: ` + spiffeID + `
    max_ttl: 1h
`
	if len(dns) > 0 {
		doc += "    dns_names: ['" + strings.Join(dns, "', '") + "']\n"
	}
	return Parse([]byte(doc))
}

func TestTwoPlaceholdersCannotSpliceOneIdentityFromDifferentClaims(t *testing.T) {
	p, err := segmentPolicy(t, "spiffe://example.org/{{claims.owner}}/{{claims.repo}}")
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Evaluate(context.Background(), "github", map[string]any{"owner": "a", "repo": "b"})
	if err != nil || m.SPIFFEID != "spiffe://example.org/a/b" {
		t.Fatalf("honest claims: %v %v", m.SPIFFEID, err)
	}
	// Both would otherwise be spiffe://example.org/a/b/c.
	for _, claims := range []map[string]any{
		{"owner": "a/b", "repo": "c"},
		{"owner": "a", "repo": "b/c"},
	} {
		_, err := p.Evaluate(context.Background(), "github", claims)
		var de *DenyError
		if !errors.As(err, &de) || de.Check != CheckSPIFFEIDSegment || !strings.Contains(de.Detail, "one path segment") {
			t.Errorf("claims %v: %v, want a denial by the spiffe_id_segment check", claims, err)
		}
	}
}

func TestAPlaceholderIsOneSegmentUnlessMarkedPath(t *testing.T) {
	one, err := segmentPolicy(t, "spiffe://example.org/ci/{{claims.x}}")
	if err != nil {
		t.Fatal(err)
	}
	multi, err := segmentPolicy(t, "spiffe://example.org/ci/{{ claims.x | path }}/x")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		p      *Policy
		value  string
		id     string
		denied string
	}{
		{"one segment takes a plain value", one, "payments", "spiffe://example.org/ci/payments", ""},
		{"one segment refuses a slash", one, "acme/payments", "", CheckSPIFFEIDSegment},
		{"one segment refuses dot", one, ".", "", CheckSPIFFEIDSegment},
		{"one segment refuses dot-dot", one, "..", "", CheckSPIFFEIDSegment},
		{"one segment refuses empty", one, "", "", CheckSPIFFEID},
		{"|path spans segments", multi, "acme/payments", "spiffe://example.org/ci/acme/payments/x", ""},
		{"|path still refuses dot-dot segments", multi, "acme/../admin", "", CheckSPIFFEID},
		{"|path still refuses empty segments", multi, "acme//x", "", CheckSPIFFEID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.p.Evaluate(context.Background(), "github", map[string]any{"x": tc.value})
			if tc.denied == "" {
				if err != nil || m.SPIFFEID != tc.id {
					t.Fatalf("got %q, %v; want %q", m.SPIFFEID, err, tc.id)
				}
				return
			}
			var de *DenyError
			if !errors.As(err, &de) || de.Check != tc.denied {
				t.Fatalf("got %q, %v; want a denial by %s", m.SPIFFEID, err, tc.denied)
			}
		})
	}
}

func TestPlaceholdersInSeparateSegmentsLoad(t *testing.T) {
	for _, id := range []string{
		"spiffe://example.org/ns/{{claims.ns}}/sa/{{claims.sa}}",
		"spiffe://example.org/ci-{{claims.a}}/{{claims.b|path}}/x",
		"spiffe://example.org/{{claims.a}}/{{claims.b}}",
	} {
		if _, err := segmentPolicy(t, id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}

func TestPathMarkerIsCheckedAtLoad(t *testing.T) {
	for _, tc := range []struct {
		name, spiffeID string
		dns            []string
		want           string
	}{
		{"two |path placeholders in one spiffe_id are refused", "spiffe://example.org/{{claims.a|path}}/{{claims.b|path}}", nil, "at most one placeholder"},
		{"|path in a DNS name is refused", "spiffe://example.org/x", []string{"{{claims.a|path}}.prod.internal"}, "only for spiffe_id"},
		{"two placeholders in one segment are refused", "spiffe://example.org/ci/{{claims.a}}-{{claims.b}}", nil, "share a path segment"},
		{"a |path placeholder sharing a segment is refused", "spiffe://example.org/ci/{{claims.a|path}}x{{claims.b}}", nil, "share a path segment"},
		{"another modifier is refused", "spiffe://example.org/{{claims.a|upper}}", nil, "modifier"},
		{"an empty modifier is refused", "spiffe://example.org/{{claims.a|}}", nil, "modifier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := segmentPolicy(t, tc.spiffeID, tc.dns...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
