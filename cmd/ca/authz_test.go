package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/config"
)

const authzPolicy = "../../pkg/authz/testdata/policy.yaml"

func runAuthzCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, config.MapEnv(nil), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestAuthzCheckExitsZeroOnAllowAndOneOnDeny(t *testing.T) {
	code, out, errOut := runAuthzCLI(t, "authz", "check", "--policy", authzPolicy, "--source", "spiffe://example.org/prod/orders",
		"--service", "payments", "--method", "POST", "--path", "/v1/refunds/1")
	if code != exitOK || !strings.Contains(out, "decision=allow reason=allowed endpoint=refunds-write mode=enforce") {
		t.Errorf("allow: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runAuthzCLI(t, "authz", "check", "--policy", authzPolicy, "--source", "spiffe://example.org/prod/reporting",
		"--service", "payments", "--method", "POST", "--path", "/v1/refunds/1", "--json")
	if code != exitError || !strings.Contains(out, `"reason": "policy_no_write_permission"`) || !strings.Contains(errOut, "not allowed: deny") {
		t.Errorf("deny: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runAuthzCLI(t, "authz", "check", "--policy", authzPolicy, "--source", "spiffe://example.org/prod/reporting",
		"--service", "payments", "--method", "GET", "--path", "/v1/reports/x", "--header", "X-Tenant=acme", "--time", "2026-12-05T12:00:00Z")
	if code != exitOK || !strings.Contains(out, "endpoint=reports") {
		t.Errorf("condition with header and time: exit %d\n%s", code, out)
	}
	code, out, _ = runAuthzCLI(t, "authz", "check", "--policy", authzPolicy, "--source", "spiffe://example.org/prod/payments",
		"--service", "reporting", "--method", "GET", "--path", "/v1/export/x")
	if code != exitError || !strings.Contains(out, "decision=would_deny") {
		t.Errorf("would_deny: exit %d\n%s", code, out)
	}
	if code, _, _ := runAuthzCLI(t, "authz", "check", "--policy", authzPolicy, "--service", "payments"); code != exitUsage {
		t.Errorf("without --path: exit %d", code)
	}
}

func TestAuthzTestRunsTheCasesAndFailsOnAnyFailure(t *testing.T) {
	code, out, errOut := runAuthzCLI(t, "authz", "test", authzPolicy, "--cases", "../../pkg/authz/testdata/cases.yaml")
	if code != exitOK || !strings.Contains(out, "PASS reporting may read refunds but not write them") || !strings.Contains(out, "7 passed, 0 failed") {
		t.Fatalf("passing cases: exit %d\n%s%s", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "cases.yaml")
	if err := os.WriteFile(bad, []byte("cases:\n  - name: reporting writes refunds\n    source: spiffe://example.org/prod/reporting\n    service: payments\n    method: POST\n    path: /v1/refunds/1\n    expect: {decision: allow}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runAuthzCLI(t, "authz", "test", "--cases", bad, authzPolicy)
	if code != exitError || !strings.Contains(out, `FAIL reporting writes refunds`) || !strings.Contains(out, `decision: got "deny", want "allow"`) ||
		!strings.Contains(errOut, "1 of 1 authz test cases failed") {
		t.Fatalf("failing case: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.WriteFile(bad, []byte("cases:\n  - name: x\n    service: payments\n    method: GET\n    path: /\n    expect: {reason: nope}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runAuthzCLI(t, "authz", "test", authzPolicy, "--cases", bad); code != exitError || !strings.Contains(errOut, `expect.reason "nope"`) {
		t.Errorf("unknown reason: exit %d %s", code, errOut)
	}
}

func TestAuthzExplainPrintsWhoMayCallWhat(t *testing.T) {
	code, out, errOut := runAuthzCLI(t, "authz", "explain", "--policy", authzPolicy)
	if code != exitOK {
		t.Fatalf("exit %d %s", code, errOut)
	}
	for _, want := range []string{"SERVICE", "WHO MAY CALL", "refunds-write", "POST,PUT,PATCH,DELETE", "/v1/refunds /v1/refunds/*", "spiffe://example.org/prod/orders", "export", "observe", "[headers: X-Tenant]"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = runAuthzCLI(t, "authz", "explain", "--policy", authzPolicy, "--source", "spiffe://example.org/prod/reporting")
	if !strings.Contains(out, "refunds-read") || !strings.Contains(out, "reports") || strings.Contains(out, "refunds-write") || strings.Contains(out, "export") {
		t.Errorf("explain --source reporting:\n%s", out)
	}
	_, out, _ = runAuthzCLI(t, "authz", "explain", "--policy", authzPolicy, "--service", "reporting")
	if strings.Contains(out, "payments") || !strings.Contains(out, "export") {
		t.Errorf("explain --service reporting:\n%s", out)
	}
	if code, _, _ := runAuthzCLI(t, "authz", "explain", "--policy", authzPolicy, "--service", "nope"); code != exitUsage {
		t.Errorf("unknown service: exit %d", code)
	}
}
