package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// issueLineage records an enrollment for acme/payments and n renewals,
// each of the previous one, through the real issuer and store.
func (o *operatorServer) issueLineage(id string, n int) []*issuer.Issued {
	o.t.Helper()
	var out []*issuer.Issued
	for i := 0; i <= n; i++ {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		req := issuer.Request{
			PublicKey: key.Public(), SPIFFEID: id, TTL: time.Hour, Actor: "test", PolicyRule: "ci", PolicyVersion: "v-test",
			Provenance: []byte(`{"token_issuer":"github","sub":"repo:acme/payments","claims":{"repository":"acme/payments"}}`),
			Repository: "acme/payments", TokenIssuer: "github", Subject: "repo:acme/payments",
		}
		if i > 0 {
			req.RenewedFrom, req.Provenance, req.Repository = out[i-1].Serial, []byte(`{"shape":"renewal"}`), ""
		}
		got, err := o.iss.Issue(o.ctx, req)
		if err != nil {
			o.t.Fatalf("issue %d of the lineage: %v", i, err)
		}
		out = append(out, got)
		o.clk.Advance(time.Second)
	}
	return out
}

func sortedSerials(list ...*issuer.Issued) []string {
	var out []string
	for _, c := range list {
		out = append(out, c.Serial)
	}
	slices.Sort(out)
	return out
}

// TestRevokingAContainedLineage runs on Postgres: keyCompromise revokes the
// certificate and every renewal of it, other reasons only the one unless
// the request asks for the lineage, and the inventory shows lineages.
func TestRevokingAContainedLineage(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	revoker := creds{bearer: o.token("rita", "pki-revokers")}
	auditor := creds{bearer: o.token("audrey", "pki-auditors")}
	a := o.issueLineage("spiffe://example.org/prod/payments", 3)
	b := o.issueLineage("spiffe://example.org/prod/ledger", 2)

	// The inventory: ?lineage= lists a lineage newest first, and the
	// repository search finds the renewals.
	res, body := o.call(auditor, "GET", "/v1/certificates?lineage="+a[0].Serial, "", "")
	page := decode[CertificatePage](t, body)
	if res.StatusCode != 200 || len(page.Items) != 4 || page.Items[0].Serial != a[3].Serial ||
		page.Items[0].Lineage != a[0].Serial || page.Items[0].RenewedFrom != a[2].Serial {
		t.Fatalf("lineage list: %d %+v", res.StatusCode, page.Items)
	}
	res, body = o.call(auditor, "GET", "/v1/certificates?repository=acme/payments&limit=1000", "", "")
	if page = decode[CertificatePage](t, body); res.StatusCode != 200 || len(page.Items) != 7 {
		t.Fatalf("repository search found %d certificates, want all 7 of both lineages (renewals included)", len(page.Items))
	}
	res, body = o.call(auditor, "GET", "/v1/certificates/"+a[1].Serial, "", "")
	if v := decode[CertificateView](t, body); res.StatusCode != 200 || v.Lineage != a[0].Serial ||
		v.RenewedFrom != a[0].Serial || v.SupersededBy != a[2].Serial {
		t.Errorf("GET one certificate shows lineage %q renewed_from %q superseded_by %q", v.Lineage, v.RenewedFrom, v.SupersededBy)
	}
	res, body = o.call(auditor, "GET", "/v1/certificates.csv?lineage="+a[0].Serial, "", "")
	rows, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil || res.StatusCode != 200 || len(rows) != 5 {
		t.Fatalf("CSV of a lineage: %d, %d rows, %v", res.StatusCode, len(rows), err)
	}
	repoCol := slices.Index(CSVColumns, "repository")
	for _, row := range rows[1:] {
		if row[repoCol] != "acme/payments" {
			t.Errorf("CSV row %s has repository %q; renewals carry their lineage's", row[0], row[repoCol])
		}
	}
	if res, _ := o.call(auditor, "GET", "/v1/certificates?lineage=xyz", "", ""); res.StatusCode != 400 {
		t.Errorf("a lineage that is not a serial: %d, want 400", res.StatusCode)
	}

	// keyCompromise of a[1]: a[1], a[2], a[3]; a[0] stays.
	res, body = o.call(revoker, "POST", "/v1/certificates/"+a[1].Serial+"/revoke", `{"reason":"keyCompromise"}`, "contain-1")
	got := decode[RevokeResponse](t, body)
	if res.StatusCode != 200 || got.AlreadyRevoked || got.Revoked != 3 ||
		!slices.Equal(got.RevokedSerials, sortedSerials(a[1], a[2], a[3])) || got.Certificate.Status != store.CertRevoked {
		t.Fatalf("keyCompromise answered %d %+v", res.StatusCode, got)
	}
	for i, want := range []store.CertStatus{store.CertActive, store.CertRevoked, store.CertRevoked, store.CertRevoked} {
		if c, _ := o.st.GetCertificate(o.ctx, a[i].Serial); c.Status != want {
			t.Errorf("lineage certificate %d is %s, want %s", i, c.Status, want)
		}
	}
	if n := len(o.auditByRequestID()["contain-1"]); n != 3 {
		t.Errorf("%d audit entries for the lineage revocation, want one per certificate (3)", n)
	}

	// superseded of b[0]: only b[0]; then scope lineage: the rest.
	res, body = o.call(revoker, "POST", "/v1/certificates/"+b[0].Serial+"/revoke", `{"reason":"superseded"}`, "one")
	if got = decode[RevokeResponse](t, body); res.StatusCode != 200 || got.Revoked != 1 || !slices.Equal(got.RevokedSerials, []string{b[0].Serial}) {
		t.Fatalf("superseded answered %d %+v", res.StatusCode, got)
	}
	if c, _ := o.st.GetCertificate(o.ctx, b[1].Serial); c.Status != store.CertActive {
		t.Errorf("a revocation for superseded revoked the renewal too")
	}
	res, body = o.call(revoker, "POST", "/v1/certificates/"+b[0].Serial+"/revoke", `{"reason":"superseded","scope":"lineage"}`, "rest")
	if got = decode[RevokeResponse](t, body); res.StatusCode != 200 || !got.AlreadyRevoked || got.Revoked != 2 ||
		!slices.Equal(got.RevokedSerials, sortedSerials(b[1], b[2])) || got.Certificate.RevocationReason != "superseded" {
		t.Fatalf("scope lineage answered %d %+v", res.StatusCode, got)
	}
	res, body = o.call(revoker, "POST", "/v1/certificates/"+b[0].Serial+"/revoke", `{"reason":"keyCompromise"}`, "nothing-left")
	if got = decode[RevokeResponse](t, body); res.StatusCode != 200 || !got.AlreadyRevoked || got.Revoked != 0 || len(got.RevokedSerials) != 0 {
		t.Fatalf("a revoked lineage again answered %d %+v", res.StatusCode, got)
	}

	for _, tc := range []struct{ name, path, body string }{
		{"an unknown scope", "/v1/certificates/" + a[0].Serial + "/revoke", `{"reason":"superseded","scope":"identity"}`},
		{"a scope that is not a string", "/v1/certificates/" + a[0].Serial + "/revoke", `{"reason":"superseded","scope":1}`},
	} {
		if res, body := o.call(revoker, "POST", tc.path, tc.body, ""); res.StatusCode != 400 {
			t.Errorf("%s: %d %s, want 400", tc.name, res.StatusCode, body)
		}
	}
	if res, _ := o.call(revoker, "POST", "/v1/certificates/abcdef0123/revoke", `{"reason":"keyCompromise"}`, ""); res.StatusCode != 404 {
		t.Errorf("keyCompromise of an unknown serial: %d, want 404", res.StatusCode)
	}
}

// A renewal of a certificate that was already renewed is refused with
// certificate_superseded, audited with the lineage, logged at WARN as a
// possible stolen key and counted.
func TestRenewingASupersededCertificateIsAPossibleTheft(t *testing.T) {
	f := newEnrollFixture(t)
	client := f.rs.client()
	key, csr := csrPEM(t)
	_, res := postJSON(t, client, f.rs.apiURL+"/v1/enroll", f.oidc.GitHubToken(t, nil), CertRequest{CSR: csr})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("enroll = %d", res.StatusCode)
	}
	var got CertResponse
	_ = json.Unmarshal(readAll(t, res), &got)
	block, _ := pem.Decode([]byte(got.Certificate))
	holder := f.rs.client(tls.Certificate{Certificate: [][]byte{block.Bytes, f.ca.inter.Raw}, PrivateKey: key})
	_, csr2 := csrPEM(t)
	if _, res = postJSON(t, holder, f.rs.apiURL+"/v1/renew", "", CertRequest{CSR: csr2}); res.StatusCode != http.StatusCreated {
		t.Fatalf("first renewal = %d", res.StatusCode)
	}
	res.Body.Close()

	// The thief, with the same certificate and key, renews again.
	_, csr3 := csrPEM(t)
	_, res = postJSON(t, holder, f.rs.apiURL+"/v1/renew", "", CertRequest{CSR: csr3})
	if p := decodeProblem(t, res); res.StatusCode != http.StatusForbidden || p.Reason != ReasonCertificateSuperseded {
		t.Fatalf("second renewal = %d %s, want 403 certificate_superseded", res.StatusCode, p.Reason)
	}
	d := f.records.denials()
	last := d[len(d)-1]
	var details map[string]string
	_ = json.Unmarshal(last.Details, &details)
	if last.Action != "renew" || last.Reason != string(ReasonCertificateSuperseded) || last.Target != got.Serial ||
		details["lineage"] != got.Serial || details["on_reuse"] != "deny" || details["check"] != enroll.CheckSuperseded {
		t.Errorf("denial record %+v %s", last, last.Details)
	}
	if !strings.Contains(f.logs.String(), `"level":"WARN","msg":"renewal of an already-renewed certificate refused: possibly a stolen key`) {
		t.Errorf("no WARN line for the reuse:\n%s", f.logs.String())
	}
	if n := labelledCounterValue(t, f.reg, "ca_renewal_reuse_total", "on_reuse", "deny"); n != 1 {
		t.Errorf("ca_renewal_reuse_total{on_reuse=deny} = %v, want 1", n)
	}
}

// labelledCounterValue reads one labelled counter from a registry.
func labelledCounterValue(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// enrollPair enrolls through POST /v1/enroll on the operator server (real
// issuer and store) and returns the answer with a TLS pair for renewals.
func (o *operatorServer) enrollPair(t *testing.T, repo string) (CertResponse, tls.Certificate) {
	t.Helper()
	key, csr := csrPEM(t)
	body, _ := json.Marshal(CertRequest{CSR: csr})
	res, raw := o.call(creds{bearer: o.ci.GitHubToken(t, map[string]any{"repository": repo})}, "POST", "/v1/enroll", string(body), "")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("enroll: %d %s", res.StatusCode, raw)
	}
	cr := decode[CertResponse](t, raw)
	return cr, o.pairOf(t, cr, key)
}

func (o *operatorServer) pairOf(t *testing.T, cr CertResponse, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	pair := tls.Certificate{PrivateKey: key}
	for rest := []byte(cr.Certificate + cr.Chain); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		pair.Certificate = append(pair.Certificate, b.Bytes)
	}
	return pair
}

// renewBody is a renewal request for a fresh key.
func renewBody(t *testing.T) (*ecdsa.PrivateKey, string) {
	key, csr := csrPEM(t)
	body, _ := json.Marshal(CertRequest{CSR: csr})
	return key, string(body)
}

// Two renewals of one certificate at once, through the real issuer into
// Postgres: exactly one gets a certificate, the other certificate_superseded
// (the one recorded second loses in the store, after signing).
func TestConcurrentRenewalsOfOneCertificateOnPostgres(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	first, pair := o.enrollPair(t, "acme/payments")
	const n = 6
	statuses := make([]int, n)
	reasons := make([]Reason, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		_, body := renewBody(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				RootCAs: o.roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}}
			defer client.CloseIdleConnections()
			<-start
			res, err := client.Post(o.apiURL+"/v1/renew", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			statuses[i] = res.StatusCode
			var p Problem
			_ = json.NewDecoder(res.Body).Decode(&p)
			reasons[i] = p.Reason
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i := range n {
		switch {
		case statuses[i] == http.StatusCreated:
			won++
		case statuses[i] != http.StatusForbidden || reasons[i] != ReasonCertificateSuperseded:
			t.Errorf("renewal %d: %d %s, want 201 or 403 certificate_superseded", i, statuses[i], reasons[i])
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent renewals of one certificate succeeded, want exactly 1", won, n)
	}
	t.Logf("%d renewals lost in the store's conditional update (after signing), the rest before",
		strings.Count(o.logs.String(), "was already renewed as"))
	page, _, err := o.st.ListCertificates(o.ctx, store.CertificateFilter{Lineage: first.Serial})
	if err != nil || len(page) != 2 {
		t.Fatalf("the lineage holds %d certificates (%v), want the enrollment and one renewal", len(page), err)
	}
}

// With renewal.on_reuse: revoke_lineage, renewing a superseded certificate
// revokes the whole lineage (keyCompromise), each audited.
func TestReuseRevokesTheLineageWhenThePolicySaysSo(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	pol := o.policy.Load()
	src := strings.Replace(o.policySrc, "roles:\n", "renewal:\n  on_reuse: revoke_lineage\nroles:\n", 1)
	next, err := policy.Parse([]byte(src))
	if err != nil || next.OnReuse() != policy.OnReuseRevokeLineage || pol.OnReuse() != policy.OnReuseDeny {
		t.Fatalf("policy with on_reuse: %v", err)
	}
	o.policy.Swap(next)

	first, pair := o.enrollPair(t, "acme/payments")
	key2, body := renewBody(t)
	res, raw := o.call(creds{cert: &pair}, "POST", "/v1/renew", body, "renew-1")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("renewal: %d %s", res.StatusCode, raw)
	}
	renewed := decode[CertResponse](t, raw)
	_ = o.pairOf(t, renewed, key2)

	_, body = renewBody(t)
	res, raw = o.call(creds{cert: &pair}, "POST", "/v1/renew", body, "reuse-1")
	if p := decode[Problem](t, raw); res.StatusCode != http.StatusForbidden || p.Reason != ReasonCertificateSuperseded {
		t.Fatalf("reuse: %d %s", res.StatusCode, raw)
	}
	for _, sn := range []string{first.Serial, renewed.Serial} {
		c, err := o.st.GetCertificate(o.ctx, sn)
		if err != nil || c.Status != store.CertRevoked || c.RevocationReason != "keyCompromise" {
			t.Errorf("%s after the reuse: %s %q (%v); want revoked for keyCompromise", sn, c.Status, c.RevocationReason, err)
		}
	}
	entries := o.auditByRequestID()["reuse-1"]
	var revokes, denials int
	for _, e := range entries {
		switch {
		case e.Action == "revoke" && e.Decision == "allow":
			revokes++
		case e.Action == "renew" && e.Decision == "deny" && e.Reason == string(ReasonCertificateSuperseded):
			denials++
		}
	}
	if revokes != 2 || denials != 1 {
		t.Errorf("audit of the reuse: %d revocations and %d denials, want 2 and 1: %+v", revokes, denials, entries)
	}
}
