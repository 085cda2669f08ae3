package mtls_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// writePair writes cred's chain and key into dir as cert.pem and key.pem by
// writing temporary files and renaming them into place, as `ca renew` does.
func writePair(t *testing.T, dir string, cred *testca.Credential, renameKey bool) {
	t.Helper()
	keyPEM, err := cred.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"cert.pem": cred.CertPEM(), "key.pem": keyPEM} {
		if name == "key.pem" && !renameKey {
			continue
		}
		tmp := filepath.Join(dir, "."+name+".new")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestARenamedInCertificateIsServedWithoutRestart replaces the server's
// certificate files by rename while it runs: the next handshake presents the
// new certificate; a half-done replacement (certificate without its key)
// keeps the old pair.
func TestARenamedInCertificateIsServedWithoutRestart(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	first, err := f.kit.CA.Issue(testca.Leaf{SPIFFEID: f.kit.AuthorizedID})
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.kit.CA.Issue(testca.Leaf{SPIFFEID: f.kit.AuthorizedID})
	if err != nil {
		t.Fatal(err)
	}
	writePair(t, dir, first, true)
	files, err := mtls.LoadCertFiles(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), nil)
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
	if got, want := served(), first.Leaf().SerialNumber.Text(16); got != want {
		t.Fatalf("served serial %s, want the first %s", got, want)
	}
	writePair(t, dir, second, false)
	if got, want := served(), first.Leaf().SerialNumber.Text(16); got != want {
		t.Errorf("with the key not yet replaced, served %s, want the old %s", got, want)
	}
	writePair(t, dir, second, true)
	if got, want := served(), second.Leaf().SerialNumber.Text(16); got != want {
		t.Errorf("after the rename, served %s, want the new %s", got, want)
	}
}

func TestLoadCertFilesRefusesMissingFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := mtls.LoadCertFiles(filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), nil); err == nil {
		t.Error("missing files accepted")
	}
}
