package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// `ca policy test` and `ca authz test` share one case runner: the same
// argument rules, summary line and exit codes.
func TestPolicyTestAndAuthzTestShareArgumentsAndExitCodes(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	commands := []struct {
		name, policy, cases, subject string
		extra                        []string
	}{
		{"policy", "../../pkg/policy/testdata/policy.yaml", "../../pkg/policy/testdata/cases.yaml", "policy", []string{"--ca-host", "ca.example.org"}},
		{"authz", authzPolicy, "../../pkg/authz/testdata/cases.yaml", "authz policy", nil},
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			// c.extra goes among the flags, before or after the policy file.
			args := func(a ...string) []string {
				out := []string{c.name, "test"}
				if !strings.HasPrefix(a[0], "-") {
					out, a = append(out, a[0]), a[1:]
				}
				return append(append(out, c.extra...), a...)
			}
			code, out, errOut := runAuthzCLI(t, args("--cases", c.cases, c.policy)...)
			if code != exitOK || !strings.Contains(out, c.subject+" "+c.policy+" (version ") || !strings.Contains(out, ", 0 failed\n") {
				t.Errorf("the policy after the flags: exit %d\n%s%s", code, out, errOut)
			}
			if code, _, errOut := runAuthzCLI(t, args(c.policy)...); code != exitUsage || !strings.Contains(errOut, "ca "+c.name+" test POLICY.yaml --cases CASES.yaml") {
				t.Errorf("without --cases: exit %d %s", code, errOut)
			}
			if code, _, errOut := runAuthzCLI(t, args("--cases", c.cases, c.policy, "extra")...); code != exitUsage || !strings.Contains(errOut, "unexpected arguments") {
				t.Errorf("a second file: exit %d %s", code, errOut)
			}
			if code, _, errOut := runAuthzCLI(t, args(c.policy, "--cases", missing)...); code != exitError || !strings.Contains(errOut, "reading the cases") {
				t.Errorf("a missing cases file: exit %d %s", code, errOut)
			}
		})
	}
}
