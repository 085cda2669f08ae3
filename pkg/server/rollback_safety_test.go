package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func problemOf(t *testing.T, body []byte) Problem {
	t.Helper()
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("not a problem: %s", body)
	}
	return p
}

func TestAbandonAndUnsafeRollbackRoutes(t *testing.T) {
	ts := newTrustServer(t)
	api := ts.api.URL

	res, body := ts.do(t, "POST", api+"/v1/issuers/abandon", "admin", `{}`, nil)
	if res.StatusCode != 404 || problemOf(t, body).Reason != ReasonNotFound {
		t.Errorf("abandon with nothing prepared = %d %s", res.StatusCode, body)
	}
	if res, body := ts.do(t, "POST", api+"/v1/issuers/abandon", "auditor", `{}`, nil); res.StatusCode != 403 {
		t.Errorf("abandon by an auditor = %d %s", res.StatusCode, body)
	}
	if res, body := ts.do(t, "POST", api+"/v1/issuers/rotate", "admin", `{"root": true}`, nil); res.StatusCode != 202 {
		t.Fatalf("rotate = %d %s", res.StatusCode, body)
	}
	if res, body := ts.do(t, "POST", api+"/v1/issuers/abandon", "admin", `{"id": "int-1"}`, nil); res.StatusCode != 404 {
		t.Errorf("abandon naming the active intermediate = %d %s", res.StatusCode, body)
	}
	res, body = ts.do(t, "POST", api+"/v1/issuers/abandon", "admin", `{"id": "root-2"}`, nil)
	var ab AbandonResponse
	if err := json.Unmarshal(body, &ab); err != nil || res.StatusCode != 200 || len(ab.Abandoned) != 3 || len(ab.KeysDeleted) != 2 {
		t.Fatalf("abandon = %d %s", res.StatusCode, body)
	}

	// A root rotation, activated, whose cross-certificate is then retired:
	// version 1 (root-1 only) no longer anchors the active intermediate.
	ts.f.clock.Advance(time.Minute)
	if res, body := ts.do(t, "POST", api+"/v1/issuers/rotate", "admin", `{"root": true}`, nil); res.StatusCode != 202 {
		t.Fatalf("rotate after abandon = %d %s", res.StatusCode, body)
	}
	if res, body := ts.do(t, "POST", api+"/v1/issuers/activate", "admin", `{"force": true}`, nil); res.StatusCode != 200 {
		t.Fatalf("activate = %d %s", res.StatusCode, body)
	}
	ctx := context.Background()
	list, err := ts.st.ListIssuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range list {
		if strings.HasPrefix(is.ID, "xc-") && is.State == store.IssuerActive {
			if err := ts.st.SetIssuerState(ctx, is.ID, store.IssuerActive, store.IssuerRetired, ts.f.clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	res, body = ts.do(t, "POST", api+"/v1/bundle/rollback", "admin", `{"to_sequence": 1}`, nil)
	if p := problemOf(t, body); res.StatusCode != 409 || p.Reason != ReasonRollbackUnsafe || !strings.Contains(p.Detail, "without a trust anchor") {
		t.Errorf("unsafe rollback = %d %s", res.StatusCode, body)
	}
	res, body = ts.do(t, "POST", api+"/v1/bundle/rollback", "admin", `{"to_sequence": 1, "force": true}`, nil)
	var v BundleVersionView
	if err := json.Unmarshal(body, &v); err != nil || res.StatusCode != 200 || v.RolledBackFrom != 1 {
		t.Errorf("forced rollback = %d %s", res.StatusCode, body)
	}
	entries, err := ts.st.AuditEntries(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range entries {
		if e.Action == "abandon" || e.Action == "rollback" {
			seen = append(seen, e.Action+":"+e.Decision+":"+e.Actor)
		}
	}
	want := "abandon:allow:operator:admin rollback:deny:operator:admin rollback:allow:operator:admin"
	if strings.Join(seen, " ") != want {
		t.Errorf("audit %v; want %s", seen, want)
	}
}
