package dashboard

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/authz"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

const authzPolicyYAML = `trust_domain: example.org
services:
  payments:
    identity: spiffe://example.org/prod/payments
    mode: observe
    endpoints:
      - name: refunds-write
        methods: [POST, PUT, PATCH, DELETE]
        paths: [/v1/refunds, /v1/refunds/*]
        allow: [spiffe://example.org/prod/orders]
      - name: refunds-read
        methods: [GET, HEAD]
        paths: [/v1/refunds/*]
        allow: [spiffe://example.org/prod/*]
  ledger:
    identity: spiffe://example.org/prod/ledger
    mode: observe
    endpoints:
      - name: entries
        methods: [GET]
        paths: [/v1/entries]
        allow: [spiffe://example.org/prod/payments, spiffe://example.org/prod/audit]
  vault:
    identity: spiffe://example.org/prod/vault
    mode: enforce
    endpoints:
      - name: secrets
        methods: [GET]
        paths: [/v1/secrets/*]
        allow: [spiffe://example.org/prod/payments]
`

type fixedAuthzPolicy struct{ p *authz.Policy }

func (f fixedAuthzPolicy) Load() *authz.Policy { return f.p }

// authzPage serves /ui/authz over st with the given policy (nil: none) and
// returns a GET of it by a development (all roles) session.
func authzPage(t *testing.T, st store.Store, clk clock.Clock, ap AuthzPolicySource) func() (int, string) {
	t.Helper()
	pol, err := policy.Parse([]byte("trust_domain: example.org\n"))
	if err != nil {
		t.Fatal(err)
	}
	ds, ok := st.(Store)
	if !ok {
		t.Fatalf("%T is not a dashboard store", st)
	}
	db, err := New(Config{DevLogin: true, SessionLifetime: 8 * time.Hour, SessionIdleTimeout: 2 * time.Hour},
		Deps{Log: slog.New(slog.DiscardHandler), Clock: clk, Store: ds, Policy: policy.NewHolder(pol), AuthzPolicy: ap, Authz: st})
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	db.Mount(r)
	rec := httptest.NewRecorder()
	if err := db.startSession(rec, httptest.NewRequest(http.MethodGet, "https://ca.example.org/ui/", nil), "local-admin", "", nil, true); err != nil {
		t.Fatal(err)
	}
	cookie := rec.Result().Cookies()[0]
	return func() (int, string) {
		req := httptest.NewRequest(http.MethodGet, "https://ca.example.org/ui/authz", nil)
		req.AddCookie(cookie)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		body, _ := io.ReadAll(w.Result().Body)
		return w.Code, string(body)
	}
}

func TestAuthzPageSQLite(t *testing.T)   { testAuthzPage(t, testkit.SQLite(t)) }
func TestAuthzPagePostgres(t *testing.T) { testAuthzPage(t, testkit.Postgres(t)) }

func audited(action, target string, at time.Time) store.AuditEntry {
	return store.AuditEntry{Time: at, Actor: "spiffe://example.org/prod/payments", Action: action, Target: target, Decision: "allow"}
}

// section returns the part of body about one service.
func section(t *testing.T, body, name string) string {
	t.Helper()
	i := strings.Index(body, `<section class="authz-service" id="svc-`+name+`"`)
	if i < 0 {
		t.Fatalf("no section for %s in\n%s", name, body)
	}
	rest := body[i:]
	if j := strings.Index(rest, "</section>"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

func testAuthzPage(t *testing.T, st store.Store) {
	ctx := context.Background()
	now := time.Date(2031, 1, 2, 10, 30, 0, 0, time.UTC)
	clk := clock.NewFake(now)
	p, err := authz.ParsePolicy([]byte(authzPolicyYAML))
	if err != nil {
		t.Fatal(err)
	}
	const (
		orders    = "spiffe://example.org/prod/orders"
		reporting = "spiffe://example.org/prod/reporting"
		evil      = `spiffe://example.org/prod/<script>alert(1)</script>`
		payments  = "spiffe://example.org/prod/payments"
	)
	rows := []store.AuthzReportCount{
		// payments, observe: reporting writes refunds (would_deny), twice
		// in two hours; orders writes (allowed); a forged source name.
		{Service: "payments", Minute: now.Add(-2 * time.Hour), Source: reporting, Endpoint: "refunds-write", Decision: authz.DecisionWouldDeny, Reason: authz.ReasonNoWritePermission, Count: 3},
		{Service: "payments", Minute: now.Add(-2*time.Hour + time.Minute), Source: reporting, Endpoint: "refunds-write", Decision: authz.DecisionWouldDeny, Reason: authz.ReasonNoWritePermission, Count: 4},
		{Service: "payments", Minute: now.Add(-20 * time.Minute), Source: evil, Endpoint: "", Decision: authz.DecisionWouldDeny, Reason: "policy_no_rule", Count: 1},
		{Service: "payments", Minute: now.Add(-10 * time.Minute), Source: orders, Endpoint: "refunds-write", Decision: authz.DecisionAllow, Reason: authz.ReasonAllowed, Count: 12},
		// Outside the 24h window: not counted.
		{Service: "payments", Minute: now.Add(-30 * time.Hour), Source: reporting, Endpoint: "refunds-write", Decision: authz.DecisionWouldDeny, Reason: authz.ReasonNoWritePermission, Count: 1000},
		// ledger, observe: only allowed traffic from payments.
		{Service: "ledger", Minute: now.Add(-time.Hour), Source: payments, Endpoint: "entries", Decision: authz.DecisionAllow, Reason: authz.ReasonAllowed, Count: 5},
	}
	if _, err := st.AddAuthzReportCounts(ctx, rows, audited("authz_report", "payments", now)); err != nil {
		t.Fatal(err)
	}
	req := func(id, service string, at time.Time) store.AuthzOverride {
		o := store.AuthzOverride{ID: id, Source: reporting, Service: service, Endpoint: "refunds-write", Reason: "incident <b>42</b>",
			TTL: time.Hour, RequestedBy: "alice", RequestedAt: at}
		if _, _, err := st.RequestAuthzOverride(ctx, o, audited("authz_override_request", id, at)); err != nil {
			t.Fatal(err)
		}
		return o
	}
	req("ovr-pending", "payments", now.Add(-time.Hour))
	req("ovr-active", "payments", now.Add(-time.Hour))
	if _, _, err := st.ApproveAuthzOverride(ctx, "ovr-active", "bob", now.Add(-30*time.Minute), audited("authz_override_approve", "ovr-active", now)); err != nil {
		t.Fatal(err)
	}
	req("ovr-ended", "payments", now.Add(-time.Hour))
	if _, _, err := st.EndAuthzOverride(ctx, "ovr-ended", "bob", now.Add(-50*time.Minute), audited("authz_override_end", "ovr-ended", now)); err != nil {
		t.Fatal(err)
	}
	req("ovr-expired", "payments", now.Add(-3*time.Hour))
	if _, _, err := st.ApproveAuthzOverride(ctx, "ovr-expired", "bob", now.Add(-3*time.Hour), audited("authz_override_approve", "ovr-expired", now)); err != nil {
		t.Fatal(err)
	}
	req("ovr-gone", "billing", now.Add(-time.Hour))

	code, body := authzPage(t, st, clk, fixedAuthzPolicy{p})()
	if code != http.StatusOK {
		t.Fatalf("GET /ui/authz: %d\n%s", code, body)
	}
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<b>42") {
		t.Fatalf("reported or requested text is not escaped:\n%s", body)
	}
	if !strings.Contains(body, p.Version()) || !strings.Contains(body, `href="/ui/authz" class="current"`) {
		t.Errorf("page misses the policy version or the current nav link")
	}

	pay := section(t, body, "payments")
	for _, want := range []string{
		`data-verdict="not-ready"`, "8 request(s) would have been denied",
		`<span class="mode mode-observe">observe</span>`,
		// observed callers vs the policy: orders may write, reporting may not.
		`<td class="mono">` + reporting + `</td><td>refunds-write</td><td><span class="decision decision-would_deny">would_deny</span></td><td><span class="reason reason-policy_no_write_permission">policy_no_write_permission</span></td><td>7</td><td><span class="bad">no</span></td>`,
		`<td class="mono">` + orders + `</td><td>refunds-write</td><td><span class="decision decision-allow">allow</span></td><td><span class="reason reason-allowed">allowed</span></td><td>12</td><td>yes</td>`,
		"spiffe://example.org/prod/&lt;script&gt;alert(1)&lt;/script&gt;",
		"— 8 in total",
		// refunds-read's allow entry never observed; refunds-write's was.
		`<tr><td>refunds-read</td><td class="mono">spiffe://example.org/prod/*</td></tr>`,
		"ovr-pending", "ovr-active", "incident &lt;b&gt;42&lt;/b&gt;",
		`<span class="state state-active">active</span>`, `<span class="state state-pending">pending</span>`,
	} {
		if !strings.Contains(pay, want) {
			t.Errorf("payments section misses %q:\n%s", want, pay)
		}
	}
	for _, not := range []string{"ovr-ended", "ovr-expired", "1000", `<tr><td>refunds-write</td><td class="mono">`} {
		if strings.Contains(pay, not) {
			t.Errorf("payments section shows %q:\n%s", not, pay)
		}
	}
	// Denials per hour: the bars carry 7 (two hours ago) and 1 (this hour).
	bars := regexp.MustCompile(`<title>(\d+)</title>`).FindAllStringSubmatch(pay, -1)
	if len(bars) != 24 {
		t.Fatalf("want 24 hourly bars, got %d", len(bars))
	}
	var got []string
	for _, b := range bars {
		got = append(got, b[1])
	}
	if g := strings.Join(got, ","); g != strings.Repeat("0,", 21)+"7,0,1" {
		t.Errorf("hourly denials = %s", g)
	}

	led := section(t, body, "ledger")
	for _, want := range []string{`data-verdict="ready"`, "none of the 5 request(s)",
		`<tr><td>entries</td><td class="mono">spiffe://example.org/prod/audit</td></tr>`, "No active or pending override."} {
		if !strings.Contains(led, want) {
			t.Errorf("ledger section misses %q:\n%s", want, led)
		}
	}
	if strings.Contains(led, `<td class="mono">`+payments+`</td></tr>`) {
		t.Errorf("ledger lists the observed payments edge as never observed:\n%s", led)
	}
	vault := section(t, body, "vault")
	if !strings.Contains(vault, `data-verdict="enforcing"`) || !strings.Contains(vault, "No decisions reported.") {
		t.Errorf("vault section:\n%s", vault)
	}
	if i := strings.Index(body, "Overrides of services not in the policy"); i < 0 || !strings.Contains(body[i:], "ovr-gone") {
		t.Errorf("the override of a service not in the policy is not listed")
	}
}

func TestAuthzPageWithoutPolicy(t *testing.T) {
	st := testkit.SQLite(t)
	clk := clock.NewFake(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	for name, ap := range map[string]AuthzPolicySource{"no source": nil, "empty holder": fixedAuthzPolicy{}} {
		code, body := authzPage(t, st, clk, ap)()
		if code != http.StatusOK || !strings.Contains(body, "No service-to-service authorization policy is configured") {
			t.Errorf("%s: %d\n%s", name, code, body)
		}
	}
}
