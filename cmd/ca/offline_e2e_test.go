package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
)

// offlineRoot is a root CA kept outside the CA under test, as an operator's
// offline root would be.
type offlineRoot struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newOfflineRoot(t *testing.T) *offlineRoot {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "offline root", Organization: []string{"test"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &offlineRoot{cert: cert, key: key}
}

// sign signs the intermediate CSR as an operator would: CA, pathlen 0, URI
// name constraint to the trust domain.
func (r *offlineRoot) sign(t *testing.T, csrPEM []byte, trustDomain string) []byte {
	t.Helper()
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a PEM CSR: %q", csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: csr.Subject,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(2 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedURIDomains:         []string{trustDomain},
		PermittedDNSDomainsCritical: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, r.cert, csr.PublicKey, r.key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.cert.Raw})...)
}

func TestTheOfflineRootFlowEndsWithAServingCA(t *testing.T) {
	token := testkit.SoftHSM(t)
	vars := map[string]string{
		"CA_DATABASE_URL":  testkit.PostgresURL(t),
		"CA_PKCS11_MODULE": token.Module,
		"CA_PKCS11_TOKEN":  token.TokenLabel,
		"CA_PKCS11_PIN":    token.PIN,
		"CA_TRUST_DOMAIN":  "offline.example",
	}
	dir := t.TempDir()
	csrPath, chainPath := filepath.Join(dir, "int.csr"), filepath.Join(dir, "chain.pem")

	out, errOut, code := runCA(t, vars, "init", "--intermediate-csr", csrPath)
	if code != 0 || !strings.Contains(out, "CSR written") {
		t.Fatalf("init --intermediate-csr: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := runCA(t, vars, "serve"); code != 1 || !strings.Contains(errOut, "run `ca init`") {
		t.Fatalf("serve before the import: exit %d\n%s", code, errOut)
	}

	csrPEM, err := os.ReadFile(csrPath)
	if err != nil {
		t.Fatal(err)
	}
	root := newOfflineRoot(t)
	if err := os.WriteFile(chainPath, root.sign(t, csrPEM, "offline.example"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCA(t, vars, "init", "--import-intermediate", chainPath)
	if code != 0 || !strings.Contains(out, "installed") {
		t.Fatalf("init --import-intermediate: exit %d\n%s%s", code, out, errOut)
	}

	s := startServe(t, vars)
	bundle := checkServing(t, s, "offline.example")
	s.stop(t)
	block, _ := pem.Decode(bundle)
	if block == nil || string(block.Bytes) != string(root.cert.Raw) {
		t.Errorf("the bundle is not the offline root:\n%s", bundle)
	}
}
