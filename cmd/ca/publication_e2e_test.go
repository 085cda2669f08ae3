package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// Revocation and publication end to end: the real `ca serve` on Postgres and
// SoftHSM, checked by openssl and by relying-party code, with one and with
// two processes.

const pubE2EAudience = "workload-ca-operators"

// pubE2EPolicy: acme's CI jobs enroll; the corp IdP's groups make auditors,
// revokers and admins.
func pubE2EPolicy(ciURL, idpURL string) string {
	return `trust_domain: ` + e2eTrustDomain + `
token_issuers:
  - name: ci
    issuer: ` + ciURL + `
    audience: ` + testkit.DefaultOIDCAudience + `
  - name: corp-idp
    issuer: ` + idpURL + `
    audience: ` + pubE2EAudience + `
rules:
  - name: github-acme
    issuer: ci
    when: claims.repository_owner == "acme"
    spiffe_id: spiffe://` + e2eTrustDomain + `/gh/{{claims.repository|path}}
    max_ttl: 1h
roles:
  - role: auditor
    issuer: corp-idp
    when: '"pki-auditors" in claims.groups'
  - role: revoker
    issuer: corp-idp
    when: '"pki-revokers" in claims.groups'
  - role: admin
    issuer: corp-idp
    when: '"pki-admins" in claims.groups'
`
}

// pubE2E is one initialised production CA (a Postgres database and a
// SoftHSM token) that any number of `ca serve` processes can run on.
// Children inherit SOFTHSM2_CONF from this process (testkit set it), so
// every process, `ca serve` or CLI, opens the same token directory.
type pubE2E struct {
	vars           map[string]string
	dir            string
	ci             *testkit.OIDCIssuer
	revoker, admin string // operator bearer tokens
	serial         int
}

func newPubE2E(t *testing.T) *pubE2E {
	t.Helper()
	needOpenSSLBinary(t)
	dbURL := testkit.PostgresURL(t)
	tok := testkit.SoftHSM(t)
	ci := testkit.NewOIDCIssuer(t)
	idp := testkit.NewOIDCIssuer(t, testkit.WithOIDCAudience(pubE2EAudience))
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	writeFile(t, policyPath, pubE2EPolicy(ci.URL, idp.URL), 0o644)
	cfgPath := filepath.Join(dir, "ca.yaml")
	// httptest servers share one certificate: one CA file trusts both issuers.
	writeFile(t, cfgPath, "enroll:\n  token_issuer_ca_file: "+issuerCAFile(t, ci, dir)+"\n", 0o644)
	p := &pubE2E{
		dir: dir, ci: ci,
		vars: map[string]string{
			"CA_CONFIG": cfgPath, "CA_DATABASE_URL": dbURL, "CA_PKCS11_MODULE": tok.Module,
			"CA_PKCS11_TOKEN": tok.TokenLabel, "CA_PKCS11_PIN": tok.PIN,
			"CA_TRUST_DOMAIN": e2eTrustDomain, "CA_POLICY_FILE": policyPath,
		},
		revoker: idp.Mint(t, map[string]any{"sub": "rita", "groups": []any{"pki-revokers"}}),
		admin:   idp.Mint(t, map[string]any{"sub": "ada", "groups": []any{"pki-admins"}}),
	}
	if out, errOut, code := runCA(t, p.vars, "init"); code != 0 {
		t.Fatalf("ca init: %d %s %s", code, out, errOut)
	}
	return p
}

// pubNode is one running `ca serve` with a client that trusts its bundle and
// checks every API exchange against api/openapi.yaml.
type pubNode struct {
	name string
	s    *servingCA
	e    *enrollE2E
}

func (p *pubE2E) serve(t *testing.T, name string) *pubNode {
	t.Helper()
	s := startServe(t, p.vars)
	bundle, roots := s.bundle(t)
	router := s.openapiRouter(t)
	e := &enrollE2E{s: s, roots: roots, bundle: bundle, openapi: router}
	e.client = e.mtlsClient()
	return &pubNode{name: name, s: s, e: e}
}

// pubLeaf is an enrolled certificate with its files on disk, as a relying
// party would have them.
type pubLeaf struct {
	serial   string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	issuer   *x509.Certificate // the intermediate that signed it (first in its chain)
	certPath string            // the leaf, PEM
	chain    string            // its chain (intermediates, cross-certificate), PEM
	inter    string            // its issuing intermediate alone, PEM
}

// enroll gets a certificate for an acme repository through POST /v1/enroll
// on n and writes it out.
func (p *pubE2E) enroll(t *testing.T, n *pubNode, repo string) pubLeaf {
	t.Helper()
	key := p256(t)
	a := n.e.post(t, n.e.client, "/v1/enroll", p.ci.GitHubToken(t, map[string]any{"repository": repo}),
		server.CertRequest{CSR: string(newCSR(t, key, nil))})
	if a.status != http.StatusCreated {
		t.Fatalf("enroll %s on %s: %d %s %s", repo, n.name, a.status, a.problem.Reason, a.problem.Detail)
	}
	chain := parseCerts([]byte(a.cert.Chain))
	if len(chain) == 0 {
		t.Fatalf("enroll %s: no chain", repo)
	}
	p.serial++
	base := filepath.Join(p.dir, fmt.Sprintf("leaf-%d", p.serial))
	l := pubLeaf{serial: a.cert.Serial, cert: leafOf(t, a), key: key, issuer: chain[0],
		certPath: base + ".pem", chain: base + "-chain.pem", inter: base + "-issuer.pem"}
	writeFile(t, l.certPath, a.cert.Certificate, 0o644)
	writeFile(t, l.chain, a.cert.Chain, 0o644)
	writeFile(t, l.inter, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[0].Raw})), 0o644)
	if len(l.cert.CRLDistributionPoints) != 1 || len(l.cert.OCSPServer) != 1 {
		t.Fatalf("leaf %s carries CRL DPs %v and OCSP URLs %v, want one of each", l.serial, l.cert.CRLDistributionPoints, l.cert.OCSPServer)
	}
	return l
}

// operator sends an operator request with a bearer token to n's API,
// checked against api/openapi.yaml.
func (n *pubNode) operator(t *testing.T, token, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, n.s.apiURL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := n.e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	req.Body = io.NopCloser(strings.NewReader(body))
	n.e.validate(t, req, res, raw)
	return res.StatusCode, raw
}

// revoke revokes over REST on n as a revoker.
func (p *pubE2E) revoke(t *testing.T, n *pubNode, serial, reason string) {
	t.Helper()
	status, raw := n.operator(t, p.revoker, http.MethodPost, "/v1/certificates/"+serial+"/revoke", `{"reason":"`+reason+`"}`)
	var rr server.RevokeResponse
	if err := json.Unmarshal(raw, &rr); status != http.StatusOK || err != nil || rr.AlreadyRevoked {
		t.Fatalf("revoke %s on %s: %d %s", serial, n.name, status, raw)
	}
}

// revokeErr is revoke for goroutines: it reports instead of failing.
func (p *pubE2E) revokeErr(n *pubNode, serial, reason string) error {
	req, _ := http.NewRequest(http.MethodPost, n.s.apiURL+"/v1/certificates/"+serial+"/revoke", strings.NewReader(`{"reason":"`+reason+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.revoker)
	res, err := n.e.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke %s on %s: %d %s", serial, n.name, res.StatusCode, raw)
	}
	return nil
}

// on rebases a URL a certificate carries onto n's public listener: replicas
// behind one load balancer would share the host; here each listens on its
// own port.
func (n *pubNode) on(certURL string) string {
	i := strings.Index(certURL, "/crl/")
	if i < 0 {
		i = strings.Index(certURL, "/ocsp")
	}
	return n.s.publicURL + certURL[i:]
}

// crlDownload is one GET of a CRL.
type crlDownload struct {
	node   string
	number int64
	der    []byte
	etag   string
	crl    *x509.RevocationList
}

func (d crlDownload) revokes(serial string) (int, bool) {
	for _, e := range d.crl.RevokedCertificateEntries {
		if e.SerialNumber.Text(16) == serial {
			return e.ReasonCode, true
		}
	}
	return 0, false
}

// fetchCRL downloads and parses the CRL at url and checks its signature
// against the issuing intermediate.
func fetchCRL(t *testing.T, node, url string, issuer *x509.Certificate) crlDownload {
	t.Helper()
	res, der := get(t, &http.Client{Timeout: 10 * time.Second}, url)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET %s = %d %s", url, res.StatusCode, res.Header.Get("Content-Type"))
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("the CRL at %s is not signed by %s: %v", url, issuer.Subject, err)
	}
	return crlDownload{node: node, number: crl.Number.Int64(), der: der, etag: res.Header.Get("ETag"), crl: crl}
}

// ocspStatus asks url about leaf with the Go relying-party code, checking
// the responder's signature and delegation by the leaf's issuer.
func ocspStatus(t *testing.T, url string, l pubLeaf) *ocsp.Response {
	t.Helper()
	req, err := ocsp.CreateRequest(l.cert, l.issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Post(url, "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/ocsp-response" {
		t.Fatalf("POST %s = %d %s", url, res.StatusCode, res.Header.Get("Content-Type"))
	}
	parsed, err := ocsp.ParseResponseForCert(body, l.cert, l.issuer)
	if err != nil {
		t.Fatalf("OCSP answer of %s for %s: %v", url, l.serial, err)
	}
	if parsed.SerialNumber.Cmp(l.cert.SerialNumber) != 0 {
		t.Fatalf("OCSP answer for serial %x, asked %s", parsed.SerialNumber, l.serial)
	}
	return parsed
}

func needOpenSSLBinary(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl is required in CI: %v", err)
		}
		t.Skipf("SKIPPING: NO OPENSSL on PATH, revocation interop not checked: %v", err)
	}
}

func openssl(args ...string) (string, error) {
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return string(out), err
}

// opensslVerify runs `openssl verify -crl_check` for a leaf against the
// bundle, its chain and a CRL.
func opensslVerify(bundle, chain, crl, leaf string) (string, error) {
	return openssl("verify", "-crl_check", "-CAfile", bundle, "-untrusted", chain, "-CRLfile", crl, leaf)
}

// opensslOCSP runs `openssl ocsp` against url, the responder verified
// against the bundle; it fails the test unless openssl says "Response
// verify OK".
func opensslOCSP(t *testing.T, bundle, issuer, chain, url string, target ...string) string {
	t.Helper()
	args := append([]string{"ocsp", "-issuer", issuer, "-url", url, "-CAfile", bundle, "-verify_other", chain}, target...)
	out, err := openssl(args...)
	if err != nil || !strings.Contains(out, "Response verify OK") {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func writeCRL(t *testing.T, path string, der []byte) string {
	t.Helper()
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})), 0o644)
	return path
}

// crlPublished is one "CRL published" log line of a `ca serve`.
type crlPublished struct {
	node       string
	issuer     string
	number     int64
	start, end time.Time // the generation, signing and storing of this CRL
}

func (c crlPublished) String() string {
	return fmt.Sprintf("%d by %s", c.number, c.node)
}

// publishedCRLs parses a process's JSON log for the CRLs it generated.
func publishedCRLs(t *testing.T, n *pubNode) []crlPublished {
	t.Helper()
	var out []crlPublished
	sc := bufio.NewScanner(strings.NewReader(n.s.stderr.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Time     time.Time `json:"time"`
			Msg      string    `json:"msg"`
			Issuer   string    `json:"issuer"`
			Number   int64     `json:"crl_number"`
			Duration int64     `json:"duration"` // nanoseconds, as slog's JSON handler writes durations
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "CRL published" {
			out = append(out, crlPublished{node: n.name, issuer: line.Issuer, number: line.Number,
				start: line.Time.Add(-time.Duration(line.Duration)), end: line.Time})
		}
	}
	return out
}

// foreignCA makes a self-signed CA with the same subject as ours (but its
// own key) and a leaf under it, both DER.
func foreignCA(t *testing.T, ours *x509.Certificate) (inter, leaf []byte) {
	t.Helper()
	caKey, leafKey := p256(t), p256(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: ours.Subject, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	inter, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x4242), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	leaf, err = x509.CreateCertificate(rand.Reader, leafTmpl, caTmpl, leafKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return inter, leaf
}

// TestRevocationIsPublishedForOpenSSLAtTheCertificatesOwnURLs: a leaf
// enrolled through /v1/enroll and revoked through the REST API appears in
// the CRL at its own CRL distribution point within seconds; openssl verify
// -crl_check rejects it ("certificate revoked") and accepts a good leaf;
// openssl ocsp at its AIA OCSP URL says good, revoked (keyCompromise) and
// unknown (a never-issued serial), each response verified against the
// published bundle.
func TestRevocationIsPublishedForOpenSSLAtTheCertificatesOwnURLs(t *testing.T) {
	p := newPubE2E(t)
	n := p.serve(t, "A")
	bundle := filepath.Join(p.dir, "bundle.pem")
	writeFile(t, bundle, string(n.e.bundle), 0o644)

	good := p.enroll(t, n, "acme/payments")
	bad := p.enroll(t, n, "acme/ledger")
	crlURL := good.cert.CRLDistributionPoints[0]
	if bad.cert.CRLDistributionPoints[0] != crlURL || !strings.HasPrefix(crlURL, n.s.publicURL+"/crl/") {
		t.Fatalf("CRL DPs %q and %q, want one under %s/crl/", crlURL, bad.cert.CRLDistributionPoints[0], n.s.publicURL)
	}
	before := fetchCRL(t, "A", crlURL, good.issuer)
	if _, listed := before.revokes(bad.serial); listed || before.etag != fmt.Sprintf(`"crl-%d"`, before.number) {
		t.Fatalf("CRL %d (ETag %s) before any revocation", before.number, before.etag)
	}

	p.revoke(t, n, bad.serial, "keyCompromise")
	var after crlDownload
	took := testkit.EventuallyTrue(t, 20*time.Second, "the revoked serial in the CRL at the leaf's CRL DP", func() bool {
		after = fetchCRL(t, "A", crlURL, good.issuer)
		_, listed := after.revokes(bad.serial)
		return listed
	})
	t.Logf("revocation in the CRL %v after the revoke call returned (CRL %d -> %d)", took.Round(time.Millisecond), before.number, after.number)
	if after.number <= before.number {
		t.Errorf("CRL number went from %d to %d", before.number, after.number)
	}
	if reason, _ := after.revokes(bad.serial); reason != 1 {
		t.Errorf("CRL reason code %d, want 1 (keyCompromise)", reason)
	}
	if _, listed := after.revokes(good.serial); listed {
		t.Error("the good leaf is in the CRL")
	}
	crl := writeCRL(t, filepath.Join(p.dir, "crl.pem"), after.der)
	if out, err := opensslVerify(bundle, good.chain, crl, good.certPath); err != nil || !strings.Contains(out, ": OK") {
		t.Errorf("openssl verify -crl_check of the good leaf: %v\n%s", err, out)
	}
	if out, err := opensslVerify(bundle, bad.chain, crl, bad.certPath); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check of the revoked leaf: %v\n%s", err, out)
	}

	ocspURL := good.cert.OCSPServer[0]
	if ocspURL != n.s.publicURL+"/ocsp" {
		t.Errorf("AIA OCSP URL %q, want %s/ocsp", ocspURL, n.s.publicURL)
	}
	if out := opensslOCSP(t, bundle, good.inter, good.chain, ocspURL, "-cert", good.certPath); !strings.Contains(out, good.certPath+": good") {
		t.Errorf("openssl ocsp for the good leaf:\n%s", out)
	}
	out := opensslOCSP(t, bundle, bad.inter, bad.chain, bad.cert.OCSPServer[0], "-cert", bad.certPath)
	if !strings.Contains(out, bad.certPath+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Errorf("openssl ocsp for the revoked leaf:\n%s", out)
	}
	out = opensslOCSP(t, bundle, good.inter, good.chain, ocspURL, "-no_nonce", "-serial", "0x4142434445464748494a")
	if !strings.Contains(out, ": unknown") {
		t.Errorf("openssl ocsp for a never-issued serial:\n%s", out)
	}
	if r := ocspStatus(t, n.s.publicURL+"/ocsp", bad); r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
		t.Errorf("Go OCSP client: status %d reason %d", r.Status, r.RevocationReason)
	}
	// A certificate of another CA whose intermediate has the same name (but
	// its own key): the CertID's key hash names no CA of ours, so the
	// answer is the unsigned "unauthorized" of RFC 6960, never "good".
	fakeInter, fakeLeaf := foreignCA(t, good.issuer)
	fakeInterPath := filepath.Join(p.dir, "foreign-intermediate.pem")
	fakeLeafPath := filepath.Join(p.dir, "foreign-leaf.pem")
	writeFile(t, fakeInterPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fakeInter})), 0o644)
	writeFile(t, fakeLeafPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fakeLeaf})), 0o644)
	out, _ = openssl("ocsp", "-issuer", fakeInterPath, "-cert", fakeLeafPath, "-url", ocspURL, "-CAfile", bundle)
	if !strings.Contains(out, "Responder Error: unauthorized") {
		t.Errorf("openssl ocsp for a leaf of a foreign CA with our intermediate's name:\n%s", out)
	}
	n.s.stop(t)
}

// TestTwoServeProcessesShareRevocationPublication: two `ca serve` processes
// on one Postgres database and one SoftHSM token, on different ports.
// Revocations through either (REST on one, `ca revoke` on the other) show
// up in the CRL and OCSP answers of both; the CRL numbers of all downloads,
// from both, never go back and a number always names the same bytes; every
// CRL number was generated by exactly one process (their logs); after kill
// -9 of the process that published last, the other keeps publishing with
// higher numbers.
func TestTwoServeProcessesShareRevocationPublication(t *testing.T) {
	p := newPubE2E(t)
	a := p.serve(t, "A")
	b := p.serve(t, "B")
	nodes := []*pubNode{a, b}
	bundle := filepath.Join(p.dir, "bundle.pem")
	writeFile(t, bundle, string(a.e.bundle), 0o644)
	if !bytes.Equal(a.e.bundle, b.e.bundle) {
		t.Fatal("the two processes serve different bundles")
	}

	leaves := []pubLeaf{p.enroll(t, a, "acme/one"), p.enroll(t, b, "acme/two"), p.enroll(t, a, "acme/three"), p.enroll(t, b, "acme/four")}
	crlPath := leaves[0].cert.CRLDistributionPoints[0][strings.Index(leaves[0].cert.CRLDistributionPoints[0], "/crl/"):]
	issuer := leaves[0].issuer

	var downloads []crlDownload
	byNumber := map[int64][]byte{}
	download := func(n *pubNode) crlDownload {
		t.Helper()
		d := fetchCRL(t, n.name, n.s.publicURL+crlPath, issuer)
		if len(downloads) > 0 && d.number < downloads[len(downloads)-1].number {
			t.Fatalf("CRL number went back: %s served %d after %s served %d", d.node, d.number,
				downloads[len(downloads)-1].node, downloads[len(downloads)-1].number)
		}
		if prev, ok := byNumber[d.number]; ok && !bytes.Equal(prev, d.der) {
			t.Fatalf("two different CRLs carry number %d", d.number)
		}
		byNumber[d.number] = d.der
		downloads = append(downloads, d)
		return d
	}
	// awaitRevoked waits until both processes publish l as revoked in their
	// CRL and say so over OCSP.
	awaitRevoked := func(l pubLeaf, reason int, alive ...*pubNode) {
		t.Helper()
		for _, n := range alive {
			took := testkit.EventuallyTrue(t, 30*time.Second, l.serial+" in the CRL of "+n.name, func() bool {
				_, listed := download(n).revokes(l.serial)
				return listed
			})
			if r := ocspStatus(t, n.on(l.cert.OCSPServer[0]), l); r.Status != ocsp.Revoked || r.RevocationReason != reason {
				t.Errorf("OCSP of %s for %s: status %d reason %d", n.name, l.serial, r.Status, r.RevocationReason)
			}
			t.Logf("%s revoked in %s's CRL %d after %v", l.serial, n.name, downloads[len(downloads)-1].number, took.Round(time.Millisecond))
		}
	}
	for _, n := range nodes {
		download(n)
		for _, l := range leaves {
			if r := ocspStatus(t, n.on(l.cert.OCSPServer[0]), l); r.Status != ocsp.Good {
				t.Fatalf("OCSP of %s for unrevoked %s: status %d", n.name, l.serial, r.Status)
			}
		}
	}

	// Through A over REST, then through B with `ca revoke`.
	p.revoke(t, a, leaves[1].serial, "keyCompromise")
	awaitRevoked(leaves[1], ocsp.KeyCompromise, b, a)
	tokenPath := filepath.Join(p.dir, "revoker.jwt")
	writeFile(t, tokenPath, p.revoker, 0o600)
	out, errOut, code := runCA(t, nil, "revoke", leaves[2].serial, "--reason", "superseded", "--server", b.s.apiURL,
		"--token-file", tokenPath, "--ca-bundle", bundle)
	if code != 0 || !strings.HasPrefix(out, "revoked "+leaves[2].serial) {
		t.Fatalf("ca revoke on B: %d %q %q", code, out, errOut)
	}
	awaitRevoked(leaves[2], ocsp.Superseded, a, b)

	// A burst of revocations through both at once: every one lands in the
	// CRLs of both, and the advisory lock still lets one process generate
	// each number (checked below).
	var burst []pubLeaf
	for i := range 6 {
		burst = append(burst, p.enroll(t, nodes[i%2], fmt.Sprintf("acme/burst-%d", i)))
	}
	errs := make(chan error, len(burst))
	for i, l := range burst {
		go func() { errs <- p.revokeErr(nodes[i%2], l.serial, "affiliationChanged") }()
	}
	for range burst {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		testkit.EventuallyTrue(t, 30*time.Second, "the burst in the CRL of "+n.name, func() bool {
			d := download(n)
			for _, l := range burst {
				if _, listed := d.revokes(l.serial); !listed {
					return false
				}
			}
			return true
		})
	}

	// openssl agrees with both processes' artifacts.
	for _, n := range nodes {
		last := download(n)
		crl := writeCRL(t, filepath.Join(p.dir, "crl-"+n.name+".pem"), last.der)
		for i, l := range leaves {
			out, err := opensslVerify(bundle, l.chain, crl, l.certPath)
			if revoked := i == 1 || i == 2; revoked != strings.Contains(out, "certificate revoked") || !revoked && err != nil {
				t.Errorf("openssl verify -crl_check of leaf %d with %s's CRL %d: %v\n%s", i, n.name, last.number, err, out)
			}
		}
		out := opensslOCSP(t, bundle, leaves[2].inter, leaves[2].chain, n.on(leaves[2].cert.OCSPServer[0]), "-cert", leaves[2].certPath)
		if !strings.Contains(out, ": revoked") || !strings.Contains(out, "Reason: superseded") {
			t.Errorf("openssl ocsp on %s for the leaf revoked through B:\n%s", n.name, out)
		}
	}

	// Each CRL number was generated by one process only.
	producers := func() (map[int64]string, []crlPublished) {
		by := map[int64]string{}
		var all []crlPublished
		for _, n := range nodes {
			for _, c := range publishedCRLs(t, n) {
				if crlPath != "/crl/"+c.issuer+".crl" {
					continue
				}
				if other, dup := by[c.number]; dup {
					t.Errorf("CRL %d of %s was generated by %s and by %s", c.number, c.issuer, other, c.node)
				}
				by[c.number] = c.node
				all = append(all, c)
			}
		}
		// No two processes were generating at the same time.
		for _, x := range all {
			for _, y := range all {
				if x.node < y.node && x.start.Before(y.end) && y.start.Before(x.end) {
					t.Errorf("%s generated CRL %d (%s to %s) while %s generated CRL %d (%s to %s)", x.node, x.number,
						x.start.Format(time.StampMicro), x.end.Format(time.StampMicro), y.node, y.number,
						y.start.Format(time.StampMicro), y.end.Format(time.StampMicro))
				}
			}
		}
		return by, all
	}
	by, all := producers()
	for _, d := range downloads {
		if by[d.number] == "" {
			t.Errorf("no process logged generating CRL %d, which %s served", d.number, d.node)
		}
	}
	t.Logf("CRLs generated: %v", all)

	// kill -9 the process that generated the latest CRL; the other takes
	// over and keeps the numbers increasing.
	var latest int64
	for num := range by {
		latest = max(latest, num)
	}
	victim, survivor := a, b
	if by[latest] == "B" {
		victim, survivor = b, a
	}
	if err := victim.s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.s.exited
	t.Logf("killed %s (generated CRL %d) with SIGKILL", victim.name, latest)
	p.revoke(t, survivor, leaves[3].serial, "cessationOfOperation")
	awaitRevoked(leaves[3], ocsp.CessationOfOperation, survivor)
	if got := downloads[len(downloads)-1].number; got <= latest {
		t.Errorf("after the kill %s serves CRL %d, not above %d", survivor.name, got, latest)
	}
	by, _ = producers()
	if by[downloads[len(downloads)-1].number] != survivor.name {
		t.Errorf("CRL %d after the kill was not generated by the survivor %s", downloads[len(downloads)-1].number, survivor.name)
	}
	// The survivor still answers for the leaves the victim issued and revoked.
	for _, l := range leaves[:3] {
		want := map[bool]int{true: ocsp.Revoked, false: ocsp.Good}[l.serial == leaves[1].serial || l.serial == leaves[2].serial]
		if r := ocspStatus(t, survivor.on(l.cert.OCSPServer[0]), l); r.Status != want {
			t.Errorf("after the kill %s says %d for %s, want %d", survivor.name, r.Status, l.serial, want)
		}
	}
	var numbers []int64
	for _, d := range downloads {
		numbers = append(numbers, d.number)
	}
	t.Logf("CRL numbers of %d downloads from both processes: %v", len(downloads), numbers)
	survivor.s.stop(t)
}
