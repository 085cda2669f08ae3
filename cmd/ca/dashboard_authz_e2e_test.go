package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/workload-ca/workload-ca/pkg/authz"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// forgedSource is a "source" a reporting service could send: the CA keeps
// it as reported, so the dashboard must show it as text.
const forgedSource = `spiffe://` + e2eTrustDomain + `/gh/acme/<img src=x id=injected>`

// seedAuthzReport posts one decision report over mTLS as the payments
// service (its own service in authzE2EPolicy): reporting's refund writes
// would be denied, orders' are allowed, and one forged source; and stores a
// pending emergency override for reporting, as `POST /v1/authz/overrides`
// would.
func seedAuthzReport(t *testing.T, apiURL, dbURL string, roots *x509.CertPool, payments tls.Certificate) {
	t.Helper()
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{payments}, MinVersion: tls.VersionTLS12}}}
	now := time.Now().UTC()
	id := "spiffe://" + e2eTrustDomain + "/gh/acme/"
	body, _ := json.Marshal(authz.Report{Service: "payments", PolicyVersion: sha256Hex(authzE2EPolicy("observe")),
		WindowStart: now.Add(-30 * time.Second), WindowEnd: now, Counts: []authz.CountRow{
			{Source: id + "reporting", Endpoint: "refunds-write", Decision: authz.DecisionWouldDeny, Reason: authz.ReasonNoWritePermission, Count: 5},
			{Source: id + "orders", Endpoint: "refunds-write", Decision: authz.DecisionAllow, Reason: authz.ReasonAllowed, Count: 9},
			{Source: forgedSource, Endpoint: "", Decision: authz.DecisionWouldDeny, Reason: authz.ReasonNoRule, Count: 1},
		}})
	res, err := client.Post(apiURL+"/v1/authz/reports", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/authz/reports as payments: %d %s", res.StatusCode, raw)
	}
	st, err := storeopen.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	o := store.AuthzOverride{ID: "ovr-e2e-pending", Source: id + "reporting", Service: "payments", Endpoint: "refunds-write",
		Reason: "INC-42 refunds backlog", TTL: 2 * time.Hour, RequestedBy: "corp-idp:alice", RequestedAt: now}
	if _, _, err := st.RequestAuthzOverride(context.Background(), o, store.AuditEntry{Time: now, Actor: o.RequestedBy,
		Action: "authz_override_request", Target: o.ID, Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
}

// checkAuthzPage opens /ui/authz as the signed-in auditor and checks what
// seedAuthzReport left: payments in observe mode, not ready to enforce, the
// callers against the policy, the forged source as text, the never-observed
// allowed edge, the pending override; and saves a screenshot.
func checkAuthzPage(t *testing.T, ctx context.Context, apiURL string, screenshot func(context.Context, string),
	do func(context.Context, string, ...chromedp.Action[chromedp.Void]), text func(context.Context, string) string) {
	t.Helper()
	do(ctx, "auditor opens the authorization page",
		chromedp.Navigate(apiURL+"/ui/authz"),
		chromedp.WaitVisible(chromedp.ID("svc-payments")),
	)
	screenshot(ctx, "7-authz")
	section := text(ctx, "svc-payments")
	id := "spiffe://" + e2eTrustDomain + "/gh/acme/"
	for _, want := range []string{
		"observe", "Not ready to enforce: 6 request(s) would have been denied",
		id + "reporting", "policy_no_write_permission", id + "orders",
		forgedSource, "policy_no_rule",
		"refunds-read", id + "*", // allowed, never observed
		"ovr-e2e-pending", "pending", "INC-42 refunds backlog",
		"— 6 in total",
	} {
		if !strings.Contains(section, want) {
			t.Errorf("the payments section lacks %q:\n%s", want, section)
		}
	}
	injected, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#injected, #svc-payments img").length`))
	if err != nil || injected != 0 {
		t.Errorf("the forged source became markup (%d elements, %v)", injected, err)
	}
	bars, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#svc-payments svg rect").length`))
	if err != nil || bars != 24 {
		t.Errorf("denials per hour: %d bars (%v), want 24", bars, err)
	}
	if version := text(ctx, "authz-version"); version != sha256Hex(authzE2EPolicy("observe")) {
		t.Errorf("policy version %q", version)
	}
}
