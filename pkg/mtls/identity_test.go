package mtls_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// replace writes data to dir/name by writing a temporary file and renaming
// it into place, as `ca renew` does.
func replace(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".new")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func keyPEM(t *testing.T, c *testca.Credential) []byte {
	t.Helper()
	b, err := c.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRenamedInCertificateFilesAreServedWithoutRestart replaces the server's
// key.pem, cert.pem and chain.pem one by one, in `ca renew`'s order, while it
// runs; the new certificate comes from a rotated intermediate. Until all three
// belong together the old set is served; then the next handshake presents
// the new one.
func TestRenamedInCertificateFilesAreServedWithoutRestart(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	rotated, err := f.kit.CA.Rotate("rotated intermediate")
	if err != nil {
		t.Fatal(err)
	}
	first, err := f.kit.CA.Issue(testca.Leaf{SPIFFEID: f.kit.AuthorizedID})
	if err != nil {
		t.Fatal(err)
	}
	second, err := rotated.Issue(testca.Leaf{SPIFFEID: f.kit.AuthorizedID})
	if err != nil {
		t.Fatal(err)
	}
	replace(t, dir, "key.pem", keyPEM(t, first))
	replace(t, dir, "cert.pem", testca.CertsPEM(first.Chain[0]))
	replace(t, dir, "chain.pem", testca.CertsPEM(first.Chain[1:]...))
	files, err := mtls.LoadCertFiles(mtls.CertPaths{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), Chain: filepath.Join(dir, "chain.pem")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := f.config(t, testca.Good, &recorder{})
	sc.Identity = files
	srv := startServer(t, mustServer(t, sc))
	served := func() string {
		t.Helper()
		var serial string
		cc := f.config(t, testca.Good, &recorder{})
		cc.Revocation = nil // the kit's CRL is the first intermediate's only
		cfg := mustClient(t, cc)
		verify := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			serial = cs.PeerCertificates[0].SerialNumber.Text(16)
			return verify(cs)
		}
		if err := dial(t, srv.addr, cfg); err != nil {
			t.Fatal(err)
		}
		if err := srv.result(t); err != nil {
			t.Fatal(err)
		}
		return serial
	}
	old, renewed := first.Leaf().SerialNumber.Text(16), second.Leaf().SerialNumber.Text(16)
	if got := served(); got != old {
		t.Fatalf("served serial %s, want the first %s", got, old)
	}
	replace(t, dir, "key.pem", keyPEM(t, second))
	if got := served(); got != old {
		t.Errorf("with only the key replaced, served %s, want the old %s", got, old)
	}
	replace(t, dir, "cert.pem", testca.CertsPEM(second.Chain[0]))
	if got := served(); got != old {
		t.Errorf("with the chain not yet replaced, served %s, want the old %s", got, old)
	}
	replace(t, dir, "chain.pem", testca.CertsPEM(second.Chain[1:]...))
	if got := served(); got != renewed {
		t.Errorf("after all renames, served %s, want the new %s", got, renewed)
	}
}

func TestLoadCertFilesRefusesMissingFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := mtls.LoadCertFiles(mtls.CertPaths{Cert: filepath.Join(dir, "c.pem"), Key: filepath.Join(dir, "k.pem")}, nil); err == nil {
		t.Error("missing files accepted")
	}
}
