package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/examples/authz/service"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/authz"
	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// The identities of the three example services and of the test's own
// caller (a "frontend" in front of orders and reporting).
var (
	exPaymentsID  = "spiffe://" + e2eTrustDomain + "/gh/acme/payments"
	exOrdersID    = "spiffe://" + e2eTrustDomain + "/gh/acme/orders"
	exReportingID = "spiffe://" + e2eTrustDomain + "/gh/acme/reporting"
	exFrontendID  = "spiffe://" + e2eTrustDomain + "/gh/acme/frontend"
)

// examplesPolicy is the authz policy of the three example services with
// payments in paymentsMode; orders and reporting enforce, for the frontend.
func examplesPolicy(paymentsMode string) string {
	return `trust_domain: ` + e2eTrustDomain + `
services:
  payments:
    identity: ` + exPaymentsID + `
    mode: ` + paymentsMode + `
    endpoints:
      - name: refunds-write
        methods: [POST, PUT, PATCH, DELETE]
        paths: [/v1/refunds, /v1/refunds/*]
        allow: [` + exOrdersID + `]
      - name: refunds-read
        methods: [GET, HEAD]
        paths: [/v1/refunds/*]
        allow: [spiffe://` + e2eTrustDomain + `/gh/acme/*]
  orders:
    identity: ` + exOrdersID + `
    mode: enforce
    endpoints:
      - name: refund-order
        methods: [POST]
        paths: [/v1/orders/*/refund]
        allow: [` + exFrontendID + `]
  reporting:
    identity: ` + exReportingID + `
    mode: enforce
    endpoints:
      - name: refund-reports
        methods: [GET, POST]
        paths: [/v1/refund-reports/**]
        allow: [` + exFrontendID + `]
`
}

// loggedDecision is one "authz: decision" line of a service's JSON log.
type loggedDecision struct {
	Msg           string `json:"msg"`
	Source        string `json:"source_identity"`
	Destination   string `json:"destination_identity"`
	Service       string `json:"service"`
	Endpoint      string `json:"endpoint"`
	Method        string `json:"method"`
	Path          string `json:"path"`
	Decision      string `json:"decision"`
	Reason        string `json:"reason"`
	Mode          string `json:"mode"`
	PolicyVersion string `json:"policy_version"`
	Override      string `json:"override"`
}

// decisionsLogged parses the decision lines of a service's log.
func decisionsLogged(t *testing.T, log *testkit.LockedBuffer) []loggedDecision {
	t.Helper()
	var out []loggedDecision
	sc := bufio.NewScanner(strings.NewReader(log.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var d loggedDecision
		if json.Unmarshal(sc.Bytes(), &d) == nil && d.Msg == "authz: decision" {
			out = append(out, d)
		}
	}
	return out
}

// TestThreeExampleServicesObserveThenEnforceWithATwoPersonOverride runs the
// real `ca serve` (Postgres, SoftHSM) with an authz policy and the three
// example services of examples/authz in-process on loopback, with
// certificates enrolled from that CA. reporting's refund write is let
// through but logged would_deny while payments observes and shows up in the
// CA's report aggregates; once payments enforces (file rewritten, SIGHUP,
// the Fetcher refreshes) reporting gets 403 policy_no_write_permission
// while orders still succeeds; an override requested by one admin changes
// nothing until a second approves it, then allows the call until it is
// ended (ended rather than waited out: the TTL runs on the CA's real clock);
// POST /v1/authz/decide agrees with every decision payments logged.
//
// The services' Fetchers run their refresh loops (hint 30 s); the test also
// calls Refresh after each policy change, as the loop would at its next tick.
func TestThreeExampleServicesObserveThenEnforceWithATwoPersonOverride(t *testing.T) {
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
	observe, enforce := examplesPolicy("observe"), examplesPolicy("enforce")
	writeFile(t, authzPath, observe, 0o644)
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

	// Each service (and the frontend) enrolls with its CI token and keeps
	// its certificate as `ca enroll` writes it.
	type cred struct {
		pair           tls.Certificate
		certPath, keyP string
	}
	enroll := func(repo string) cred {
		t.Helper()
		key := p256(t)
		a := e.post(t, e.client, "/v1/enroll", ci.GitHubToken(t, map[string]any{"repository": "acme/" + repo}),
			server.CertRequest{CSR: string(newCSR(t, key, nil))})
		if a.status != http.StatusCreated {
			t.Fatalf("enroll %s: %d %+v", repo, a.status, a.problem)
		}
		c := cred{pair: tlsPair(t, a, key), certPath: filepath.Join(dir, repo+".pem"), keyP: filepath.Join(dir, repo+".key")}
		writeFile(t, c.certPath, a.cert.Certificate+a.cert.Chain, 0o644)
		writeFile(t, c.keyP, string(pemKey(t, key)), 0o600)
		return c
	}
	creds := map[string]cred{}
	for _, n := range []string{service.Payments, service.Orders, service.Reporting, "frontend"} {
		creds[n] = enroll(n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := map[string]*testkit.LockedBuffer{}
	start := func(name, paymentsURL string) *service.Service {
		t.Helper()
		logs[name] = &testkit.LockedBuffer{}
		svc, err := service.New(ctx, service.Config{
			Name: name, Addr: "127.0.0.1:0", CAURL: s.apiURL, BundleURL: s.publicURL + "/bundle.json",
			TrustDomain: e2eTrustDomain, CertFile: creds[name].certPath, KeyFile: creds[name].keyP,
			PolicyCache: filepath.Join(dir, name+"-policy.jws"), ReportInterval: time.Hour, AllowLogEvery: 1,
			PaymentsURL: paymentsURL, PaymentsID: exPaymentsID, Log: jsonLogger(logs[name]),
		})
		if err != nil {
			t.Fatalf("starting %s: %v", name, err)
		}
		svc.Start(ctx)
		t.Cleanup(func() {
			sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
			defer c()
			_ = svc.Stop(sctx)
			if t.Failed() {
				t.Logf("%s log:\n%s", name, logs[name])
			}
		})
		if h := svc.Fetcher.Health(); !h.Loaded || h.Source != "ca" || h.PolicyVersion != sha256Hex(observe) {
			t.Fatalf("%s did not load its policy from the CA: %+v\n%s", name, h, logs[name])
		}
		return svc
	}
	payments := start(service.Payments, "")
	paymentsURL := "https://" + payments.Addr()
	orders := start(service.Orders, paymentsURL)
	reporting := start(service.Reporting, paymentsURL)

	// The frontend talks to orders and reporting over mTLS with pkg/mtls.
	bundles, err := mtls.NewHTTPBundle(ctx, mtls.HTTPBundleConfig{URL: s.publicURL + "/bundle.json", TrustDomain: spiffeid.RequireTrustDomainFromString(e2eTrustDomain)})
	if err != nil {
		t.Fatal(err)
	}
	frontendCert := creds["frontend"].pair
	frontendTo := func(id string) *http.Client {
		ccfg, err := mtls.ClientTLSConfig(mtls.Config{Bundles: bundles, Identity: mtls.StaticIdentity{Cert: &frontendCert},
			Authorize: mtls.AuthorizeID(spiffeid.RequireFromString(id))})
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: ccfg}}
	}
	toOrders, toReporting := frontendTo(exOrdersID), frontendTo(exReportingID)
	call := func(c *http.Client, url string) (int, map[string]any) {
		t.Helper()
		res, err := c.Post(url, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		if res.StatusCode == http.StatusForbidden && res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("403 from %s with Content-Type %q", url, res.Header.Get("Content-Type"))
		}
		return res.StatusCode, body
	}
	refundByOrders := func() (int, map[string]any) { return call(toOrders, "https://"+orders.Addr()+"/v1/orders/o-1/refund") }
	// reporting re-issues refund rf-1 (orders' first): a write to a path
	// the policy lets it read.
	reissueByReporting := func() (int, map[string]any) {
		return call(toReporting, "https://"+reporting.Addr()+"/v1/refund-reports/rf-1/reissue")
	}

	paymentsCA := e.mtlsClient(creds[service.Payments].pair)
	decide := func(source, method, path string) authz.Decision {
		t.Helper()
		body, _ := json.Marshal(server.AuthzDecideRequest{Source: source, Method: method, Path: path})
		req, _ := http.NewRequest(http.MethodPost, s.apiURL+"/v1/authz/decide", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := paymentsCA.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		e.validate(t, req, res, raw)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("decide: %d %s", res.StatusCode, raw)
		}
		var d authz.Decision
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// lastDecision is payments' newest logged decision for source; the
	// CA's central decision for the same call must agree with it.
	lastDecision := func(source string) loggedDecision {
		t.Helper()
		var last loggedDecision
		for _, d := range decisionsLogged(t, logs[service.Payments]) {
			if d.Source == source {
				last = d
			}
		}
		if last.Decision == "" {
			t.Fatalf("payments logged no decision for %s:\n%s", source, logs[service.Payments])
		}
		wantPath := "/v1/refunds"
		if source == exReportingID {
			wantPath = "/v1/refunds/rf-1"
		}
		if last.Destination != exPaymentsID || last.Service != service.Payments || last.Method != http.MethodPost || last.Path != wantPath {
			t.Errorf("logged decision fields: %+v", last)
		}
		central := decide(source, last.Method, last.Path)
		if central.Decision != last.Decision || central.Reason != last.Reason || central.Endpoint != last.Endpoint ||
			central.Mode != last.Mode || central.PolicyVersion != last.PolicyVersion || central.OverrideID != last.Override {
			t.Errorf("the CA decides %+v, payments logged %+v", central, last)
		}
		return last
	}

	// Observe: orders refunds an order; reporting's re-issue of that refund
	// goes through but is logged would_deny.
	if code, body := refundByOrders(); code != http.StatusCreated || body["requested_by"] != exOrdersID || body["id"] != "rf-1" {
		t.Fatalf("orders' refund: %d %v", code, body)
	}
	if d := lastDecision(exOrdersID); d.Decision != "allow" || d.Reason != authz.ReasonAllowed || d.Endpoint != "refunds-write" {
		t.Errorf("orders' refund logged %+v", d)
	}
	if code, body := reissueByReporting(); code != http.StatusCreated || body["requested_by"] != exReportingID {
		t.Fatalf("reporting's refund write while payments observes: %d %v", code, body)
	}
	if d := lastDecision(exReportingID); d.Decision != "would_deny" || d.Reason != authz.ReasonNoWritePermission || d.Mode != "observe" || d.PolicyVersion != sha256Hex(observe) {
		t.Errorf("observe mode logged %+v", d)
	}

	// payments' Reporter delivers its counts; the CA's aggregates show the
	// would-deny traffic ("ready to enforce?").
	if err := payments.Reporter.Flush(ctx); err != nil {
		t.Fatalf("payments' report: %v", err)
	}
	now := time.Now()
	rows, err := st.ListAuthzReportCounts(ctx, service.Payments, now.Add(-time.Hour), now.Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	var wouldDeny, allowed int64
	for _, r := range rows {
		switch {
		case r.Source == exReportingID && r.Decision == "would_deny" && r.Reason == authz.ReasonNoWritePermission:
			wouldDeny += r.Count
		case r.Source == exOrdersID && r.Decision == "allow" && r.Endpoint == "refunds-write":
			allowed += r.Count
		}
	}
	if wouldDeny != 1 || allowed != 1 {
		t.Errorf("report aggregates: would_deny by reporting %d, allowed for orders %d, want 1 and 1: %+v", wouldDeny, allowed, rows)
	}

	// Enforce: rewrite the file, SIGHUP the CA, payments' Fetcher refreshes.
	writeFile(t, authzPath, enforce, 0o644)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.waitAudit(t, "authz_policy_reload", "allow")
	refresh := func() {
		t.Helper()
		if err := payments.Fetcher.Refresh(ctx); err != nil {
			t.Fatalf("payments' policy refresh: %v", err)
		}
	}
	refresh()
	// payments says in its health (GET /healthz over mTLS) which version
	// it enforces.
	_, raw := get(t, frontendTo(exPaymentsID), "https://"+payments.Addr()+"/healthz")
	var health authz.FetcherHealth
	if err := json.Unmarshal(raw, &health); err != nil || !health.Loaded || health.Source != "ca" || health.PolicyVersion != sha256Hex(enforce) {
		t.Fatalf("payments' health after the switch: %s (%v), want version %s", raw, err, sha256Hex(enforce))
	}
	code, body := reissueByReporting()
	if code != http.StatusForbidden || body["reason"] != authz.ReasonNoWritePermission {
		t.Fatalf("reporting's refund write once payments enforces: %d %v", code, body)
	}
	if d := lastDecision(exReportingID); d.Decision != "deny" || d.Mode != "enforce" || d.PolicyVersion != sha256Hex(enforce) {
		t.Errorf("enforce mode logged %+v", d)
	}
	if code, body := refundByOrders(); code != http.StatusCreated {
		t.Fatalf("orders' refund once payments enforces: %d %v", code, body)
	}
	lastDecision(exOrdersID)

	// Emergency override: requested by the break-glass admin, which alone
	// changes nothing (not even self-approved); approved by a second admin.
	bundlePath := filepath.Join(dir, "bundle.pem")
	writeFile(t, bundlePath, string(bundle), 0o644)
	glass := enroll("ops-break-glass")
	tokenPath := filepath.Join(dir, "ada.token")
	writeFile(t, tokenPath, idp.Mint(t, map[string]any{"sub": "ada", "groups": []any{"pki-admins"}}), 0o600)
	asGlass := []string{"--server", s.apiURL, "--client-cert", glass.certPath, "--client-key", glass.keyP, "--ca-bundle", bundlePath}
	asAda := []string{"--server", s.apiURL, "--token-file", tokenPath, "--ca-bundle", bundlePath, "--trust-domain", e2eTrustDomain}
	out, errOut, exit := runCA(t, nil, append([]string{"authz", "overrides", "request", "--source", exReportingID,
		"--service", service.Payments, "--endpoint", "refunds-write", "--ttl", "10m", "--reason", "incident 42", "--json"}, asGlass...)...)
	var ov server.OverrideView
	if exit != 0 || json.Unmarshal([]byte(out), &ov) != nil || ov.State != "pending" {
		t.Fatalf("ca authz overrides request: %d %q %q", exit, out, errOut)
	}
	if _, errOut, exit := runCA(t, nil, append([]string{"authz", "overrides", "approve", ov.ID}, asGlass...)...); exit != 1 || !strings.Contains(errOut, "403 forbidden") {
		t.Fatalf("self-approval: %d %q", exit, errOut)
	}
	refresh()
	if code, body := reissueByReporting(); code != http.StatusForbidden || body["reason"] != authz.ReasonNoWritePermission {
		t.Fatalf("a pending override let reporting write: %d %v", code, body)
	}
	lastDecision(exReportingID)
	if out, errOut, exit := runCA(t, nil, append([]string{"authz", "overrides", "approve", ov.ID}, asAda...)...); exit != 0 || !strings.Contains(out, "active until") {
		t.Fatalf("approval by a second admin: %d %q %q", exit, out, errOut)
	}
	refresh()
	if h := payments.Fetcher.Health(); h.Overrides != 1 {
		t.Errorf("payments' health after the approval: %+v", h)
	}
	if code, body := reissueByReporting(); code != http.StatusCreated || body["requested_by"] != exReportingID {
		t.Fatalf("reporting's write under the approved override: %d %v", code, body)
	}
	if d := lastDecision(exReportingID); d.Decision != "allow" || d.Reason != authz.ReasonOverride || d.Override != ov.ID || d.Endpoint != "refunds-write" {
		t.Errorf("the override's allow logged %+v", d)
	}

	// Ended (instead of waiting out its 10m TTL): denied again.
	if out, errOut, exit := runCA(t, nil, append([]string{"authz", "overrides", "end", ov.ID}, asGlass...)...); exit != 0 || !strings.Contains(out, "ended") {
		t.Fatalf("end: %d %q %q", exit, out, errOut)
	}
	refresh()
	if code, body := reissueByReporting(); code != http.StatusForbidden || body["reason"] != authz.ReasonNoWritePermission {
		t.Fatalf("reporting's write after the override ended: %d %v", code, body)
	}
	if d := lastDecision(exReportingID); d.Decision != "deny" || d.Override != "" {
		t.Errorf("after the override ended payments logged %+v", d)
	}
	if code, _ := refundByOrders(); code != http.StatusCreated {
		t.Fatalf("orders' refund at the end: %d", code)
	}
	lastDecision(exOrdersID)

	// Stopping payments flushes its counts: the denials reach the CA too.
	sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
	defer c()
	if err := payments.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	rows, err = st.ListAuthzReportCounts(ctx, service.Payments, now.Add(-time.Hour), time.Now().Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]int64{}
	for _, r := range rows {
		if r.Source == exReportingID {
			counted[r.Decision+"/"+r.Reason] += r.Count
		}
	}
	if counted["deny/"+authz.ReasonNoWritePermission] != 3 || counted["allow/"+authz.ReasonOverride] != 1 || counted["would_deny/"+authz.ReasonNoWritePermission] != 1 {
		t.Errorf("reporting's decisions at payments, as the CA aggregates them: %v", counted)
	}
	s.stop(t)
}

// jsonLogger logs as a service does in production: JSON lines, Info and up.
func jsonLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }
