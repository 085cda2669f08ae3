package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// The CA rotation drill against the real binary; the fixture is in
// publication_e2e_test.go.

// fingerprints are the SHA-256 pins of the roots in a PEM bundle.
func fingerprints(pemBundle []byte) []string {
	var out []string
	for _, c := range parseCerts(pemBundle) {
		out = append(out, fingerprint(c))
	}
	return out
}

// verifyAgainst checks a leaf's path to roots (PEM) through its own chain,
// as crypto/x509 and openssl verify each build it.
func verifyAgainst(t *testing.T, what string, rootsPEM []byte, rootsPath string, l pubLeaf) {
	t.Helper()
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(rootsPEM)
	for _, c := range parseCerts(mustRead(t, l.chain)) {
		inter.AddCert(c)
	}
	if _, err := l.cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("crypto/x509: leaf %s does not verify against %s: %v", l.serial, what, err)
	}
	if out, err := openssl("verify", "-CAfile", rootsPath, "-untrusted", l.chain, l.certPath); err != nil || !strings.Contains(out, ": OK") {
		t.Errorf("openssl verify: leaf %s against %s: %v\n%s", l.serial, what, err, out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bundleVersions lists GET /v1/bundle/versions, newest first.
func (p *pubE2E) bundleVersions(t *testing.T, n *pubNode) []server.BundleVersionView {
	t.Helper()
	status, raw := n.operator(t, p.admin, http.MethodGet, "/v1/bundle/versions", "")
	var page struct {
		Items []server.BundleVersionView `json:"items"`
	}
	if err := json.Unmarshal(raw, &page); status != http.StatusOK || err != nil || len(page.Items) == 0 {
		t.Fatalf("GET /v1/bundle/versions: %d %s", status, raw)
	}
	return page.Items
}

// issuerStates maps issuer IDs to their states from GET /v1/issuers.
func (p *pubE2E) issuerStates(t *testing.T, n *pubNode) map[string]string {
	t.Helper()
	status, raw := n.operator(t, p.admin, http.MethodGet, "/v1/issuers", "")
	var page struct {
		Items []server.IssuerView `json:"items"`
	}
	if err := json.Unmarshal(raw, &page); status != http.StatusOK || err != nil {
		t.Fatalf("GET /v1/issuers: %d %s", status, raw)
	}
	out := map[string]string{}
	for _, is := range page.Items {
		out[is.ID] = string(is.State)
	}
	return out
}

// TestRotationDrillWithTheRealBinaryOnPostgresAndSoftHSM: a root rotation
// over REST as admin publishes the new root at once; `ca issuers activate
// --force` (a second process on the same token) moves signing to the new
// intermediate without a restart; during the overlap leaves of the old and
// of the new intermediate both verify against the published bundle (and the
// new one against the old root alone, through its cross-certificate); each
// intermediate has its own CRL URL, which serves its own CRL and lists its
// own revocations; the old intermediate drains (retiring, not retired while
// its leaves live). A bad push (another root rotation by `ca issuers rotate
// --root`) is undone by POST /v1/bundle/rollback: the previous anchors come
// back under a higher sequence number with a new ETag.
func TestRotationDrillWithTheRealBinaryOnPostgresAndSoftHSM(t *testing.T) {
	p := newPubE2E(t)
	n := p.serve(t, "A")
	oldRootPath := filepath.Join(p.dir, "old-root.pem")
	writeFile(t, oldRootPath, string(n.e.bundle), 0o644)
	old := p.enroll(t, n, "acme/before-rotation")
	first := p.bundleVersions(t, n)[0]
	if len(first.AnchorsSHA256) != 1 {
		t.Fatalf("a fresh CA publishes %d anchors", len(first.AnchorsSHA256))
	}

	// Only an admin rotates.
	if status, raw := n.operator(t, p.revoker, http.MethodPost, "/v1/issuers/rotate", `{"root":true}`); status != http.StatusForbidden {
		t.Fatalf("rotate as a revoker: %d %s", status, raw)
	}
	status, raw := n.operator(t, p.admin, http.MethodPost, "/v1/issuers/rotate", `{"root":true}`)
	var rot server.RotateResponse
	if err := json.Unmarshal(raw, &rot); status != http.StatusAccepted || err != nil || rot.Root == nil || rot.CrossCertificate == nil {
		t.Fatalf("rotate as admin: %d %s", status, raw)
	}
	if rot.ActivateAfter.Before(time.Now().Add(30 * time.Minute)) {
		t.Errorf("activation after %v, want the overlap (1h) ahead", rot.ActivateAfter)
	}
	if roots := awaitSequence(t, n.s, rot.BundleSequence); roots != 2 {
		t.Fatalf("bundle %d has %d roots, want the old and the new", rot.BundleSequence, roots)
	}
	if out, errOut, code := runCA(t, p.vars, "issuers", "activate"); code == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("activate before the overlap: %d %s %s", code, out, errOut)
	}
	out, errOut, code := runCA(t, p.vars, "issuers", "activate", "--force", "--actor", "e2e-admin")
	if code != 0 || !strings.Contains(out, "activated") || !strings.Contains(out, rot.Intermediate.ID) {
		t.Fatalf("ca issuers activate --force: %d %s %s", code, out, errOut)
	}

	// The serving process notices the activation by itself (issuer recheck).
	var fresh pubLeaf
	took := testkit.EventuallyTrue(t, 30*time.Second, "ca serve signing with the new intermediate", func() bool {
		fresh = p.enroll(t, n, "acme/after-rotation")
		return !bytes.Equal(fresh.issuer.Raw, old.issuer.Raw)
	})
	t.Logf("the running ca serve signed with %s %v after the activation", rot.Intermediate.ID, took.Round(time.Millisecond))
	if fresh.issuer.Subject.String() != rot.Intermediate.Subject {
		t.Errorf("new leaf issued by %s, want %s", fresh.issuer.Subject, rot.Intermediate.Subject)
	}

	// The overlap: both generations verify against what is published.
	_, overlapPEM := get(t, &http.Client{Timeout: 10 * time.Second}, n.s.publicURL+"/bundle.pem")
	overlapPath := filepath.Join(p.dir, "bundle-overlap.pem")
	writeFile(t, overlapPath, string(overlapPEM), 0o644)
	if len(parseCerts(overlapPEM)) != 2 {
		t.Fatalf("the bundle during the overlap has %d roots", len(parseCerts(overlapPEM)))
	}
	verifyAgainst(t, "the overlap bundle", overlapPEM, overlapPath, old)
	verifyAgainst(t, "the overlap bundle", overlapPEM, overlapPath, fresh)
	// A relying party that still has only the old root: crypto/x509 finds
	// the path through the cross-certificate in the served chain. OpenSSL
	// 3.0 does not backtrack between the two untrusted certificates that
	// share the new intermediate's name and key and takes the first (the
	// new intermediate, under the new root), so it needs the
	// cross-certificate alone; such relying parties get the new root from
	// the bundle during the overlap.
	oldRoots, inter := x509.NewCertPool(), x509.NewCertPool()
	oldRoots.AppendCertsFromPEM(n.e.bundle)
	var cross *x509.Certificate
	for _, c := range parseCerts(mustRead(t, fresh.chain)) {
		inter.AddCert(c)
		if bytes.Equal(c.RawIssuer, parseCerts(n.e.bundle)[0].RawSubject) {
			cross = c
		}
	}
	if _, err := fresh.cert.Verify(x509.VerifyOptions{Roots: oldRoots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("crypto/x509: the new leaf does not verify against the old root alone: %v", err)
	}
	if cross == nil {
		t.Fatal("the new leaf's chain carries no cross-certificate signed by the old root")
	}
	crossPath := filepath.Join(p.dir, "cross.pem")
	writeFile(t, crossPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cross.Raw})), 0o644)
	if out, err := openssl("verify", "-CAfile", oldRootPath, "-untrusted", crossPath, fresh.certPath); err != nil || !strings.Contains(out, ": OK") {
		t.Errorf("openssl verify: the new leaf against the old root through the cross-certificate: %v\n%s", err, out)
	}
	if out, err := openssl("verify", "-CAfile", oldRootPath, "-untrusted", fresh.chain, fresh.certPath); err != nil {
		t.Logf("as expected of OpenSSL 3.0, the served chain does not verify against the old root alone: %s", strings.TrimSpace(out))
	}

	// Each intermediate has its own CRL URL, serving its own CRL.
	oldCRL, freshCRL := old.cert.CRLDistributionPoints[0], fresh.cert.CRLDistributionPoints[0]
	if oldCRL == freshCRL || !strings.HasSuffix(freshCRL, "/crl/"+rot.Intermediate.ID+".crl") {
		t.Fatalf("CRL DPs: old %s, new %s (new intermediate %s)", oldCRL, freshCRL, rot.Intermediate.ID)
	}
	p.revoke(t, n, old.serial, "superseded")
	p.revoke(t, n, fresh.serial, "keyCompromise")
	for _, c := range []struct {
		l     pubLeaf
		url   string
		other pubLeaf
	}{{old, oldCRL, fresh}, {fresh, freshCRL, old}} {
		var d crlDownload
		testkit.EventuallyTrue(t, 30*time.Second, c.l.serial+" in "+c.url, func() bool {
			d = fetchCRL(t, "A", c.url, c.l.issuer)
			_, listed := d.revokes(c.l.serial)
			return listed
		})
		if _, listed := d.revokes(c.other.serial); listed {
			t.Errorf("%s lists %s, a leaf of the other intermediate", c.url, c.other.serial)
		}
		crl := writeCRL(t, filepath.Join(p.dir, "crl-"+c.l.serial+".pem"), d.der)
		if out, err := opensslVerify(overlapPath, c.l.chain, crl, c.l.certPath); err == nil || !strings.Contains(out, "certificate revoked") {
			t.Errorf("openssl verify -crl_check with %s: %v\n%s", c.url, err, out)
		}
		out := opensslOCSP(t, overlapPath, c.l.inter, c.l.chain, c.l.cert.OCSPServer[0], "-cert", c.l.certPath)
		if !strings.Contains(out, ": revoked") {
			t.Errorf("openssl ocsp for a leaf of %s:\n%s", c.l.issuer.Subject, out)
		}
		// Our serial, asked of the intermediate that did not issue it.
		out = opensslOCSP(t, overlapPath, c.l.inter, c.l.chain, c.l.cert.OCSPServer[0], "-no_nonce", "-serial", "0x"+c.other.serial)
		if !strings.Contains(out, ": unknown") {
			t.Errorf("openssl ocsp for %s's serial asked of %s:\n%s", c.other.issuer.Subject, c.l.issuer.Subject, out)
		}
	}

	// Draining: the old intermediate is retiring, and a rotation tick does
	// not retire it while its leaves live (retirement itself needs MaxTTL
	// of real time; pkg/issuer drills it on a fake clock).
	states := p.issuerStates(t, n)
	if states[rot.Intermediate.ID] != "active" || states[rot.Root.ID] != "active" {
		t.Errorf("after activation: %v", states)
	}
	oldInterID := strings.TrimSuffix(oldCRL[strings.LastIndex(oldCRL, "/")+1:], ".crl")
	if states[oldInterID] != "retiring" {
		t.Errorf("the old intermediate %s is %q, want retiring: %v", oldInterID, states[oldInterID], states)
	}
	if out, errOut, code := runCA(t, p.vars, "issuers", "tick"); code != 0 || !strings.Contains(out, "retired []") {
		t.Errorf("ca issuers tick during the drain: %d %s %s", code, out, errOut)
	}

	// A bad push: another root rotation from the command line, a third root
	// in the bundle.
	good := p.bundleVersions(t, n)[0]
	_, _, goodETag, _ := servedBundle(t, n.s, "")
	out, errOut, code = runCA(t, p.vars, "issuers", "rotate", "--root", "--actor", "e2e-mistake")
	if code != 0 || !strings.Contains(out, "prepared") {
		t.Fatalf("ca issuers rotate --root: %d %s %s", code, out, errOut)
	}
	bad := p.bundleVersions(t, n)[0]
	if bad.Sequence <= good.Sequence || len(bad.AnchorsSHA256) != 3 {
		t.Fatalf("bad push: version %d with %d anchors after %d", bad.Sequence, len(bad.AnchorsSHA256), good.Sequence)
	}
	awaitSequence(t, n.s, bad.Sequence)
	_, _, badETag, _ := servedBundle(t, n.s, "")
	// The serving process publishes a CRL for the intermediate that the
	// command-line process prepared, signing with the key that process
	// generated in the shared token.
	badInterID := strings.Fields(strings.TrimPrefix(out, "prepared "))[0]
	st, err := storeopen.Open(context.Background(), p.vars["CA_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	issuers, err := st.ListIssuers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var badInter *x509.Certificate
	for _, is := range issuers {
		if is.ID == badInterID {
			badInter, _ = x509.ParseCertificate(is.CertDER)
		}
	}
	if badInter == nil {
		t.Fatalf("no certificate for the prepared intermediate %q", badInterID)
	}
	testkit.EventuallyTrue(t, 30*time.Second, "a CRL of the prepared "+badInterID, func() bool {
		res, _ := get(t, &http.Client{Timeout: 10 * time.Second}, n.s.publicURL+"/crl/"+badInterID+".crl")
		return res.StatusCode == http.StatusOK
	})
	fetchCRL(t, "A", n.s.publicURL+"/crl/"+badInterID+".crl", badInter)

	// Roll back over REST: the good anchors return under a higher number.
	body := fmt.Sprintf(`{"to_sequence":%d}`, good.Sequence)
	if status, raw := n.operator(t, p.revoker, http.MethodPost, "/v1/bundle/rollback", body); status != http.StatusForbidden {
		t.Fatalf("rollback as a revoker: %d %s", status, raw)
	}
	status, raw = n.operator(t, p.admin, http.MethodPost, "/v1/bundle/rollback", body)
	var rb server.BundleVersionView
	if err := json.Unmarshal(raw, &rb); status != http.StatusOK || err != nil {
		t.Fatalf("rollback: %d %s", status, raw)
	}
	if rb.Sequence <= bad.Sequence || rb.RolledBackFrom != good.Sequence || strings.Join(rb.AnchorsSHA256, ",") != strings.Join(good.AnchorsSHA256, ",") {
		t.Fatalf("rollback to %d gave %+v; the good version had %v", good.Sequence, rb, good.AnchorsSHA256)
	}
	if roots := awaitSequence(t, n.s, rb.Sequence); roots != 2 {
		t.Errorf("the rolled-back bundle has %d roots, want 2", roots)
	}
	seq, _, etag, _ := servedBundle(t, n.s, "")
	if seq != rb.Sequence || etag == badETag || etag == goodETag {
		t.Errorf("after the rollback: spiffe_sequence %d (want %d), ETag %s (bad push %s, good version %s)", seq, rb.Sequence, etag, badETag, goodETag)
	}
	if _, _, _, status := servedBundle(t, n.s, badETag); status != http.StatusOK {
		t.Errorf("revalidating the bad push's ETag = %d, want 200 with the rolled-back bundle", status)
	}
	_, rolledPEM := get(t, &http.Client{Timeout: 10 * time.Second}, n.s.publicURL+"/bundle.pem")
	if strings.Join(fingerprints(rolledPEM), ",") != strings.Join(fingerprints(overlapPEM), ",") {
		t.Error("/bundle.pem after the rollback does not carry the anchors of the good version")
	}
	rolledPath := filepath.Join(p.dir, "bundle-rolled-back.pem")
	writeFile(t, rolledPath, string(rolledPEM), 0o644)
	verifyAgainst(t, "the rolled-back bundle", rolledPEM, rolledPath, old)
	verifyAgainst(t, "the rolled-back bundle", rolledPEM, rolledPath, fresh)
	n.s.stop(t)
}
