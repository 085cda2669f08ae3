package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// renewLeaf renews l over mTLS on n for a new key and writes the renewed
// certificate out as enroll does; the answer is returned for refusals.
func (p *pubE2E) renewLeaf(t *testing.T, n *pubNode, l pubLeaf) (pubLeaf, answer) {
	t.Helper()
	key := p256(t)
	holder := n.e.mtlsClient(tls.Certificate{Certificate: [][]byte{l.cert.Raw, l.issuer.Raw}, PrivateKey: l.key})
	a := n.e.post(t, holder, "/v1/renew", "", server.CertRequest{CSR: string(newCSR(t, key, nil))})
	if a.status != http.StatusCreated {
		return pubLeaf{}, a
	}
	return p.leafFiles(t, a, key), a
}

// leafFiles writes an issued certificate, its chain and its issuer to disk.
func (p *pubE2E) leafFiles(t *testing.T, a answer, key *ecdsa.PrivateKey) pubLeaf {
	t.Helper()
	chain := parseCerts([]byte(a.cert.Chain))
	if len(chain) == 0 {
		t.Fatal("no chain")
	}
	p.serial++
	base := filepath.Join(p.dir, fmt.Sprintf("leaf-%d", p.serial))
	l := pubLeaf{serial: a.cert.Serial, cert: leafOf(t, a), key: key, issuer: chain[0],
		certPath: base + ".pem", chain: base + "-chain.pem", inter: base + "-issuer.pem"}
	writeFile(t, l.certPath, a.cert.Certificate, 0o644)
	writeFile(t, l.chain, a.cert.Chain, 0o644)
	writeFile(t, l.inter, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[0].Raw})), 0o644)
	return l
}

// TestRenewalLineageEndToEnd: the real `ca serve`, twice, on one Postgres
// database and one SoftHSM token. A workload enrolls and renews on A; the
// superseded certificate cannot renew again (certificate_superseded);
// revoking the original for keyCompromise on A revokes the renewed
// certificate too, which B's CRL and OCSP (checked by openssl) then say;
// `ca revoke --scope lineage` does the same from the command line; a
// policy reload that changes the rule's when stops the next renewal.
func TestRenewalLineageEndToEnd(t *testing.T) {
	p := newPubE2E(t)
	a := p.serve(t, "A")
	b := p.serve(t, "B")
	st, err := storeopen.Open(context.Background(), p.vars["CA_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a.e.st = st
	bundle := filepath.Join(p.dir, "bundle.pem")
	writeFile(t, bundle, string(a.e.bundle), 0o644)

	first := p.enroll(t, a, "acme/payments")
	renewed, ans := p.renewLeaf(t, a, first)
	if ans.status != http.StatusCreated {
		t.Fatalf("renewal: %d %s %s", ans.status, ans.problem.Reason, ans.problem.Detail)
	}

	// The thief's copy of the first certificate cannot renew again.
	_, again := p.renewLeaf(t, b, first)
	if again.status != http.StatusForbidden || again.problem.Reason != server.ReasonCertificateSuperseded {
		t.Fatalf("renewing the superseded certificate on B: %d %s", again.status, again.problem.Reason)
	}
	if d, ok := a.e.denial(t, again.requestID); !ok || d.Reason != string(server.ReasonCertificateSuperseded) || d.Target != first.serial {
		t.Errorf("the superseded renewal is not audited: %+v", d)
	}
	if !strings.Contains(b.s.stderr.String(), "possibly a stolen key") {
		t.Errorf("B did not log the reuse at WARN")
	}

	// The inventory shows the lineage, and the repository search finds the
	// renewal.
	status, raw := a.operator(t, p.admin, http.MethodGet, "/v1/certificates?lineage="+first.serial, "")
	var page server.CertificatePage
	if err := json.Unmarshal(raw, &page); status != 200 || err != nil || len(page.Items) != 2 ||
		page.Items[0].Serial != renewed.serial || page.Items[0].RenewedFrom != first.serial || page.Items[0].Lineage != first.serial {
		t.Fatalf("?lineage=: %d %s", status, raw)
	}
	status, raw = a.operator(t, p.admin, http.MethodGet, "/v1/certificates?repository=acme/payments", "")
	if err := json.Unmarshal(raw, &page); status != 200 || err != nil || len(page.Items) != 2 {
		t.Fatalf("?repository= finds %d certificates, want the enrolled and the renewed one: %s", len(page.Items), raw)
	}

	// keyCompromise of the original revokes the renewal, in B's CRL and OCSP.
	status, raw = a.operator(t, p.revoker, http.MethodPost, "/v1/certificates/"+first.serial+"/revoke", `{"reason":"keyCompromise"}`)
	var rr server.RevokeResponse
	if err := json.Unmarshal(raw, &rr); status != 200 || err != nil || rr.Revoked != 2 {
		t.Fatalf("revoke the original for keyCompromise: %d %s", status, raw)
	}
	crlURL := b.on(renewed.cert.CRLDistributionPoints[0])
	var crl crlDownload
	took := testkit.EventuallyTrue(t, 20*time.Second, "the renewed certificate in B's CRL", func() bool {
		crl = fetchCRL(t, "B", crlURL, renewed.issuer)
		_, listed := crl.revokes(renewed.serial)
		return listed
	})
	t.Logf("the renewed certificate was in B's CRL %v after the revocation on A", took.Round(time.Millisecond))
	if reason, _ := crl.revokes(renewed.serial); reason != 1 {
		t.Errorf("CRL reason code %d for the renewed certificate, want 1 (keyCompromise)", reason)
	}
	crlPath := writeCRL(t, filepath.Join(p.dir, "lineage-crl.pem"), crl.der)
	if out, err := opensslVerify(bundle, renewed.chain, crlPath, renewed.certPath); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check of the renewed certificate: %v\n%s", err, out)
	}
	out := opensslOCSP(t, bundle, renewed.inter, renewed.chain, b.on(renewed.cert.OCSPServer[0]), "-cert", renewed.certPath)
	if !strings.Contains(out, renewed.certPath+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Errorf("openssl ocsp on B for the renewed certificate:\n%s", out)
	}

	// ca revoke --scope lineage, from the command line, against B.
	other := p.enroll(t, a, "acme/ledger")
	otherRenewed, ans := p.renewLeaf(t, a, other)
	if ans.status != http.StatusCreated {
		t.Fatalf("renewing the second lineage: %d %s", ans.status, ans.problem.Reason)
	}
	tokFile := filepath.Join(p.dir, "revoker.jwt")
	writeFile(t, tokFile, p.revoker, 0o600)
	stdout, stderr, code := runCA(t, nil, "revoke", other.serial, "--reason", "cessationOfOperation", "--scope", "lineage",
		"--server", b.s.apiURL, "--token-file", tokFile, "--ca-bundle", bundle)
	if code != 0 || !strings.Contains(stdout, "revoked "+otherRenewed.serial) || !strings.Contains(stdout, "2 certificates revoked") {
		t.Fatalf("ca revoke --scope lineage: %d\n%s%s", code, stdout, stderr)
	}
	testkit.EventuallyTrue(t, 20*time.Second, "the second lineage's renewal in A's CRL", func() bool {
		_, listed := fetchCRL(t, "A", a.on(otherRenewed.cert.CRLDistributionPoints[0]), otherRenewed.issuer).revokes(otherRenewed.serial)
		return listed
	})

	// A policy reload that changes the rule's when: the lineage enrolled
	// under the old one no longer renews.
	third := p.enroll(t, a, "acme/billing")
	policyPath := p.vars["CA_POLICY_FILE"]
	pol, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(pol), `when: claims.repository_owner == "acme"`,
		`when: claims.repository_owner == "acme" && claims.repository != "acme/billing"`, 1)
	if changed == string(pol) {
		t.Fatal("the e2e policy has no rule to change")
	}
	writeFile(t, policyPath, changed, 0o644)
	if err := a.s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.e.waitAudit(t, "policy_reload", "allow")
	_, refused := p.renewLeaf(t, a, third)
	if refused.status != http.StatusForbidden || refused.problem.Reason != server.ReasonPolicyDenied {
		t.Fatalf("renewal after the rule changed: %d %s", refused.status, refused.problem.Reason)
	}
	d, ok := a.e.denial(t, refused.requestID)
	var details map[string]string
	_ = json.Unmarshal(d.Details, &details)
	if !ok || details["check"] != "when" {
		t.Errorf("the refused renewal's audit entry names check %q, want when: %s", details["check"], d.Details)
	}
	a.s.stop(t)
	b.s.stop(t)
}
