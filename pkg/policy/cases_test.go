package policy

import (
	"os"
	"strings"
	"testing"
)

func TestExampleCasesPass(t *testing.T) {
	p := mustLoad(t)
	data, err := os.ReadFile("testdata/cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := ParseTestCases(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range RunTests(p, cases) {
		if !r.Passed {
			t.Error(r.String())
		}
	}
}

func TestRunTestsReportsReadableFailures(t *testing.T) {
	p := mustLoad(t)
	cases, err := ParseTestCases([]byte(`
cases:
  - name: wrong identity expected
    issuer: github
    claims: {repository: acme/payments, repository_owner: acme, ref: refs/heads/main}
    expect: {spiffe_id: spiffe://example.org/wrong, dns_names: []}
  - name: expected denial but matched
    issuer: github
    claims: {repository: acme/x, repository_owner: acme, ref: main}
    expect: {denied: true}
  - name: expected match but denied
    issuer: github
    claims: {repository_owner: evil}
    expect: {rule: any-repo-ci}
  - name: wrong roles
    issuer: corp-idp
    claims: {groups: [security]}
    expect: {roles: [admin]}
  - name: expects nothing
    issuer: github
    claims: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	results := RunTests(p, cases)
	wants := []string{
		"spiffe_id is spiffe://example.org/prod/payments, expected spiffe://example.org/wrong",
		"expected a denial, got a match by rule \"any-repo-ci\"",
		"expected a match, got a denial",
		"roles are [auditor], expected [admin auditor revoker]",
		"expects nothing",
	}
	for i, r := range results {
		if r.Passed {
			t.Errorf("%s passed, want a failure", r.Name)
			continue
		}
		if !strings.Contains(r.String(), wants[i]) {
			t.Errorf("result %d:\n%s\nwant it to contain %q", i, r, wants[i])
		}
	}
}

func TestParseTestCasesIsStrict(t *testing.T) {
	for name, doc := range map[string]string{
		"an unknown field is refused":         "cases:\n  - {name: a, issuer: github, claims: {}, expect: {denied: true}, extra: 1}\n",
		"a case without an issuer is refused": "cases:\n  - {name: a, claims: {}, expect: {denied: true}}\n",
		"a file without cases is refused":     "cases: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseTestCases([]byte(doc)); err == nil {
				t.Error("ParseTestCases accepted it")
			}
		})
	}
}
