package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// Containing a compromised workload end to end: two real `ca serve`
// processes on one Postgres and one SoftHSM token, operated with `ca
// identity`, checked through the CRLs and OCSP of both and by enrolling
// through both.
func TestContainingAnIdentityAcrossTwoServeProcesses(t *testing.T) {
	p := newPubE2E(t)
	a := p.serve(t, "A")
	b := p.serve(t, "B")
	const id = "spiffe://" + e2eTrustDomain + "/gh/acme/payments"
	bundle := filepath.Join(p.dir, "bundle.pem")
	writeFile(t, bundle, string(a.e.bundle), 0o644)
	revokerTok := filepath.Join(p.dir, "revoker.jwt")
	writeFile(t, revokerTok, p.revoker, 0o600)
	adminTok := filepath.Join(p.dir, "admin.jwt")
	writeFile(t, adminTok, p.admin, 0o600)
	identity := func(n *pubNode, token string, args ...string) (string, string, int) {
		t.Helper()
		args = append([]string{"identity"}, args...)
		args = append(args, "--server", n.s.apiURL, "--token-file", token, "--ca-bundle", bundle)
		return runCA(t, nil, args...)
	}
	enrollOn := func(n *pubNode, repo string) answer {
		t.Helper()
		return n.e.post(t, n.e.client, "/v1/enroll", p.ci.GitHubToken(t, map[string]any{"repository": repo}),
			server.CertRequest{CSR: string(newCSR(t, p256(t), nil))})
	}

	held := []pubLeaf{p.enroll(t, a, "acme/payments"), p.enroll(t, b, "acme/payments")}
	other := p.enroll(t, a, "acme/billing")
	crlPath := held[0].cert.CRLDistributionPoints[0][strings.Index(held[0].cert.CRLDistributionPoints[0], "/crl/"):]

	// Revoke the identity with a hold, through A.
	out, errOut, code := identity(a, revokerTok, "revoke", id, "--reason", "keyCompromise", "--hold", "24h")
	if code != 0 || !strings.HasPrefix(out, "revoked 2 certificates of "+id) || !strings.Contains(out, "on hold until") {
		t.Fatalf("ca identity revoke: %d %q %q", code, out, errOut)
	}
	for _, l := range held {
		if !strings.Contains(out, l.serial) {
			t.Errorf("ca identity revoke does not name %s:\n%s", l.serial, out)
		}
	}
	// Both processes publish both certificates as revoked (CRL and OCSP), and
	// leave the other identity's alone.
	for _, n := range []*pubNode{a, b} {
		took := testkit.EventuallyTrue(t, 30*time.Second, "the identity's certificates in the CRL of "+n.name, func() bool {
			d := fetchCRL(t, n.name, n.s.publicURL+crlPath, held[0].issuer)
			for _, l := range held {
				if reason, listed := d.revokes(l.serial); !listed || reason != ocsp.KeyCompromise {
					return false
				}
			}
			if _, listed := d.revokes(other.serial); listed {
				t.Fatalf("%s's CRL lists %s of another identity", n.name, other.serial)
			}
			return true
		})
		t.Logf("both certificates of %s revoked in %s's CRL after %v", id, n.name, took.Round(time.Millisecond))
		for _, l := range held {
			if r := ocspStatus(t, n.on(l.cert.OCSPServer[0]), l); r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
				t.Errorf("OCSP of %s for %s: status %d reason %d", n.name, l.serial, r.Status, r.RevocationReason)
			}
		}
		if r := ocspStatus(t, n.on(other.cert.OCSPServer[0]), other); r.Status != ocsp.Good {
			t.Errorf("OCSP of %s for the other identity's %s: status %d", n.name, other.serial, r.Status)
		}
	}
	// openssl agrees with B's CRL.
	last := fetchCRL(t, "B", b.s.publicURL+crlPath, held[0].issuer)
	crl := writeCRL(t, filepath.Join(p.dir, "crl-b.pem"), last.der)
	if out, err := opensslVerify(bundle, held[1].chain, crl, held[1].certPath); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check of a contained certificate: %v\n%s", err, out)
	}

	// The hold placed through A refuses enrollment on B (and on A).
	for _, n := range []*pubNode{b, a} {
		if got := enrollOn(n, "acme/payments"); got.status != http.StatusForbidden || got.problem.Reason != server.ReasonIdentityOnHold {
			t.Fatalf("enrolling the held identity on %s: %d %s", n.name, got.status, got.problem.Reason)
		}
	}
	if got := enrollOn(b, "acme/billing"); got.status != http.StatusCreated {
		t.Fatalf("enrolling another identity on B: %d %s", got.status, got.problem.Reason)
	}
	// Listed through B, for auditors, the CLI and the metrics.
	status, raw := b.operator(t, p.admin, http.MethodGet, "/v1/identities/holds", "")
	if status != http.StatusOK || !strings.Contains(string(raw), `"spiffe_id":"`+id+`"`) {
		t.Fatalf("GET /v1/identities/holds on B: %d %s", status, raw)
	}
	out, errOut, code = identity(b, adminTok, "list")
	if code != 0 || !strings.HasPrefix(out, id+"\tuntil ") || !strings.Contains(out, "keyCompromise\tby corp-idp:rita") {
		t.Fatalf("ca identity list on B: %d %q %q", code, out, errOut)
	}
	_, metrics := get(t, &http.Client{Timeout: 10 * time.Second}, b.s.publicURL+"/metrics")
	for _, want := range []string{"ca_identity_holds_active 1", "ca_identity_hold_refusals_total 1"} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("B's /metrics lacks %q", want)
		}
	}

	// Only an admin releases; then enrollment works again, on both.
	out, errOut, code = identity(b, revokerTok, "release", id)
	if code != 1 || !strings.Contains(errOut, "403 forbidden") {
		t.Fatalf("ca identity release as a revoker: %d %q %q", code, out, errOut)
	}
	out, errOut, code = identity(b, adminTok, "release", id)
	if code != 0 || out != "released 1 holds of "+id+"\n" {
		t.Fatalf("ca identity release: %d %q %q", code, out, errOut)
	}
	for _, n := range []*pubNode{a, b} {
		if got := enrollOn(n, "acme/payments"); got.status != http.StatusCreated {
			t.Fatalf("enrolling on %s after the release: %d %s", n.name, got.status, got.problem.Reason)
		}
	}

	// A hold alone, placed through B, refuses on A at once; A releases it.
	out, errOut, code = identity(b, revokerTok, "hold", id, "--for", "1h", "--reason", "privilegeWithdrawn")
	if code != 0 || !strings.HasPrefix(out, id+" on hold until ") {
		t.Fatalf("ca identity hold: %d %q %q", code, out, errOut)
	}
	if got := enrollOn(a, "acme/payments"); got.status != http.StatusForbidden || got.problem.Reason != server.ReasonIdentityOnHold {
		t.Fatalf("enrolling on A under a hold placed through B: %d %s", got.status, got.problem.Reason)
	}
	if _, _, code = identity(a, adminTok, "release", id); code != 0 {
		t.Fatalf("ca identity release on A: %d", code)
	}
	if got := enrollOn(b, "acme/payments"); got.status != http.StatusCreated {
		t.Fatalf("enrolling on B after A released: %d %s", got.status, got.problem.Reason)
	}
}
