package server

import (
	"encoding/csv"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// TestDenialsAreGroupedByIdentityAndReason runs on Postgres: refusals
// appended as enrollment and renewal would append them come back grouped,
// newest group first, within the window; authz denials only when asked.
func TestDenialsAreGroupedByIdentityAndReason(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	deny := func(ago time.Duration, action, actor, reason, target string) {
		t.Helper()
		_, err := o.st.AppendAudit(o.ctx, store.AuditEntry{Time: o.clk.Now().Add(-ago), Actor: actor, Action: action,
			Target: target, Decision: "deny", Reason: reason, RequestID: "r-" + target, Details: []byte(`{"rule":"ci"}`)})
		if err != nil {
			t.Fatal(err)
		}
	}
	deny(48*time.Hour, "renew", "spiffe://example.org/ci/acme/old", "certificate_revoked", "old")
	deny(3*time.Hour, "renew", "spiffe://example.org/ci/acme/api", "certificate_revoked", "s1")
	deny(2*time.Hour, "enroll", "repo:acme/web:ref:refs/heads/dev", "policy_denied", "w1")
	deny(time.Hour, "renew", "spiffe://example.org/ci/acme/api", "certificate_revoked", "s2")
	auditor := creds{bearer: o.token("audrey", "pki-auditors")}

	res, body := o.call(auditor, "GET", "/v1/denials", "", "")
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	rep := decode[DenialReport](t, body)
	if len(rep.Groups) != 2 {
		t.Fatalf("groups %+v", rep.Groups)
	}
	g := rep.Groups[0]
	if g.Action != "renew" || g.Identity != "spiffe://example.org/ci/acme/api" || g.Count != 2 || g.LastTarget != "s2" || g.LastRequestID != "r-s2" {
		t.Errorf("first group %+v", g)
	}
	if rep.Groups[1].Reason != "policy_denied" || rep.Groups[1].Count != 1 {
		t.Errorf("second group %+v", rep.Groups[1])
	}

	res, body = o.call(auditor, "GET", "/v1/denials?window=72h&action=renew", "", "")
	if rep := decode[DenialReport](t, body); res.StatusCode != 200 || len(rep.Groups) != 2 || rep.Groups[1].LastTarget != "old" {
		t.Errorf("72h renewals: %d %s", res.StatusCode, body)
	}
	// The auditor's own refused call is an authz denial, shown on request.
	o.call(creds{bearer: o.token("nobody")}, "GET", "/v1/denials", "", "")
	res, body = o.call(auditor, "GET", "/v1/denials?action=authz", "", "")
	if rep := decode[DenialReport](t, body); res.StatusCode != 200 || len(rep.Groups) != 1 || rep.Groups[0].Reason != "forbidden" {
		t.Errorf("authz denials: %d %s", res.StatusCode, body)
	}
	for _, q := range []string{"window=-1h", "window=9999h", "action=issue", "limit=0", "bogus=1", "window=1h&window=2h"} {
		if res, body := o.call(auditor, "GET", "/v1/denials?"+q, "", ""); res.StatusCode != 400 {
			t.Errorf("%s: %d %s", q, res.StatusCode, body)
		}
	}
	if res, _ := o.call(creds{bearer: o.token("rita", "pki-nobody")}, "GET", "/v1/denials", "", ""); res.StatusCode != 403 {
		t.Errorf("no role: %d", res.StatusCode)
	}
}

// TestTheCSVExportStreamsEveryFilteredCertificate exports more than one
// store page, with a filter, and checks rows, columns and formula defusing.
func TestTheCSVExportStreamsEveryFilteredCertificate(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	mk := func(i int, id string, prov string) store.Certificate {
		return store.Certificate{
			Serial: fmt.Sprintf("%x", 0x10000+i), IssuerID: issuerOf(t, o), SPIFFEID: id, DNSNames: []string{"a.internal", "b.internal"},
			NotBefore: o.clk.Now(), NotAfter: o.clk.Now().Add(time.Hour), DER: []byte{0x30, 0}, PublicKeySHA256: "00",
			Status: store.CertActive, Provenance: []byte(prov), PolicyRule: "ci", PolicyVersion: "v1",
			CreatedAt:  o.clk.Now().Add(time.Duration(i) * time.Microsecond),
			Repository: "acme/svc", TokenIssuer: "github", // as issuance sets them from the provenance
		}
	}
	const n = store.MaxListLimit + 7
	for i := range n {
		c := mk(i, "spiffe://example.org/ci/acme/svc", `{"token_issuer":"github","sub":"=cmd|' /C calc'!A0","claims":{"repository":"acme/svc","ref":"refs/heads/main","sha":"abc","run_id":"42"}}`)
		if _, err := o.st.RecordIssuance(o.ctx, c, store.AuditEntry{Time: c.CreatedAt, Actor: "t", Action: "issue", Target: c.Serial, Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	o.leaf("spiffe://example.org/other", time.Hour)
	auditor := creds{bearer: o.token("audrey", "pki-auditors")}

	res, body := o.call(auditor, "GET", "/v1/certificates.csv?repository=acme/svc&status=active", "", "")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(res.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("%d %v", res.StatusCode, res.Header)
	}
	rows, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != n+1 || strings.Join(rows[0], ",") != strings.Join(CSVColumns, ",") {
		t.Fatalf("%d rows, header %v", len(rows), rows[0])
	}
	first := map[string]string{}
	for i, col := range rows[0] {
		first[col] = rows[1][i]
	}
	if first["serial"] != fmt.Sprintf("%x", 0x10000+n-1) || first["repository"] != "acme/svc" || first["status"] != "active" ||
		first["dns_names"] != "a.internal b.internal" || first["run_id"] != "42" || first["subject"] != "'=cmd|' /C calc'!A0" {
		t.Errorf("first row %v", first)
	}
	for _, q := range []string{"limit=5", "cursor=abc", "status=bogus"} {
		if res, _ := o.call(auditor, "GET", "/v1/certificates.csv?"+q, "", ""); res.StatusCode != 400 {
			t.Errorf("%s: %d", q, res.StatusCode)
		}
	}
	if res, _ := o.call(creds{}, "GET", "/v1/certificates.csv", "", ""); res.StatusCode != 401 {
		t.Errorf("anonymous export: %d", res.StatusCode)
	}
}

func issuerOf(t *testing.T, o *operatorServer) string {
	t.Helper()
	return o.iss.ActiveIssuerID()
}
