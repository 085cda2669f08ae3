package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// reauthCA is a stand-in CA API that refuses every renewal with
// reauthentication_required and enrolls anyone presenting wantToken.
type reauthCA struct {
	t         *testing.T
	root      *x509.Certificate
	rootKey   *ecdsa.PrivateKey
	srv       *httptest.Server
	wantToken string
	mu        sync.Mutex
	enrolled  int
	renewals  int
}

func newReauthCA(t *testing.T) *reauthCA {
	c := &reauthCA{t: t, wantToken: "fresh-projected-token"}
	c.rootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &c.rootKey.PublicKey, c.rootKey)
	c.root, _ = x509.ParseCertificate(der)

	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caServer, _ := url.Parse("spiffe://example.org/ca/server") // what ca clients require of the CA
	srvCert := c.sign(&srvKey.PublicKey, caServer, time.Hour, x509.ExtKeyUsageServerAuth)
	pool := x509.NewCertPool()
	pool.AddCert(c.root)
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	c.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}},
		ClientAuth:   tls.VerifyClientCertIfGiven, ClientCAs: pool,
	}
	c.srv.StartTLS()
	t.Cleanup(c.srv.Close)
	return c
}

func (c *reauthCA) sign(pub *ecdsa.PublicKey, id *url.URL, ttl time.Duration, eku x509.ExtKeyUsage) *x509.Certificate {
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: sn, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(ttl),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{eku}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	if id != nil {
		tmpl.URIs = []*url.URL{id}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, pub, c.rootKey)
	if err != nil {
		c.t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

func (c *reauthCA) serve(w http.ResponseWriter, r *http.Request) {
	problem := func(status int, reason, detail string) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(server.Problem{Status: status, Reason: server.Reason(reason), Detail: detail})
	}
	switch r.URL.Path {
	case "/bundle.pem":
		_, _ = w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.root.Raw}))
	case "/v1/renew":
		c.mu.Lock()
		c.renewals++
		c.mu.Unlock()
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			problem(401, "unauthorized", "no client certificate")
			return
		}
		problem(403, "reauthentication_required", "the lineage began 721h ago, more than the rule's reauthenticate_after 720h0m0s")
	case "/v1/enroll":
		if r.Header.Get("Authorization") != "Bearer "+c.wantToken {
			problem(401, "token_malformed", "not the expected token")
			return
		}
		var req server.CertRequest
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &req)
		block, _ := pem.Decode([]byte(req.CSR))
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			problem(400, "csr_malformed", err.Error())
			return
		}
		id, _ := url.Parse("spiffe://example.org/ns/payments/sa/api")
		cert := c.sign(csr.PublicKey.(*ecdsa.PublicKey), id, time.Hour, x509.ExtKeyUsageClientAuth)
		c.mu.Lock()
		c.enrolled++ // counted before the answer, so a client that has it sees the count
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(server.CertResponse{Serial: cert.SerialNumber.Text(16), SPIFFEID: id.String(),
			Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})), NotAfter: cert.NotAfter})
	default:
		problem(404, "not_found", r.URL.Path)
	}
}

// workloadFiles writes a current certificate (obtained a minute ago and
// well into its lifetime, so a daemon renews at once), its key and the
// bundle into dir.
func (c *reauthCA) workloadFiles(t *testing.T, dir string) (args []string, certPath string) {
	args, certPath = c.workloadFilesValidFor(t, dir, 10*time.Second)
	ago := time.Now().Add(-time.Minute)
	if err := os.Chtimes(certPath, ago, ago); err != nil {
		t.Fatal(err)
	}
	return args, certPath
}

// workloadFilesValidFor writes a certificate obtained now and valid for
// ttl, its key and the bundle into dir.
func (c *reauthCA) workloadFilesValidFor(t *testing.T, dir string, ttl time.Duration) (args []string, certPath string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := url.Parse("spiffe://example.org/ns/payments/sa/api")
	cert := c.sign(&key.PublicKey, id, ttl, x509.ExtKeyUsageClientAuth)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	f := func(n string) string { return filepath.Join(dir, n) }
	writeFile(t, f("key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})), 0o600)
	writeFile(t, f("cert.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})), 0o644)
	writeFile(t, f("chain.pem"), "", 0o644)
	writeFile(t, f("bundle.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.root.Raw})), 0o644)
	return []string{"--server", c.srv.URL, "--trust-domain", "example.org", "--key", f("key.pem"), "--cert", f("cert.pem"), "--chain", f("chain.pem"), "--bundle", f("bundle.pem")}, f("cert.pem")
}

func serialIn(t *testing.T, path string) string {
	t.Helper()
	c, err := currentLeaf(path)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}

func TestRenewAsksToReauthenticateAndReEnrollsWithATokenFile(t *testing.T) {
	ca := newReauthCA(t)
	noEnv := func(string) (string, bool) { return "", false }

	t.Run("without --token-file it says so and keeps the certificate", func(t *testing.T) {
		args, certPath := ca.workloadFiles(t, t.TempDir())
		before := serialIn(t, certPath)
		var stdout, stderr strings.Builder
		err := cmdRenew(context.Background(), args, noEnv, &stdout, &stderr)
		var p *problemError
		if !errors.As(err, &p) || p.Reason != "reauthentication_required" {
			t.Fatalf("ca renew: %v, want the CA's reauthentication_required", err)
		}
		if !strings.Contains(stderr.String(), "requires re-authentication") || !strings.Contains(stderr.String(), "keeping the current certificate until it expires") {
			t.Errorf("stderr does not say what happens:\n%s", stderr.String())
		}
		if serialIn(t, certPath) != before {
			t.Error("the certificate file changed")
		}
	})

	t.Run("with --token-file it enrolls again by itself", func(t *testing.T) {
		dir := t.TempDir()
		args, certPath := ca.workloadFiles(t, dir)
		before := serialIn(t, certPath)
		tok := filepath.Join(dir, "token")
		writeFile(t, tok, ca.wantToken+"\n", 0o600)
		var stdout, stderr strings.Builder
		if err := cmdRenew(context.Background(), append(args, "--token-file", tok), noEnv, &stdout, &stderr); err != nil {
			t.Fatalf("ca renew --token-file: %v\n%s", err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "enrolled again spiffe://example.org/ns/payments/sa/api") ||
			!strings.Contains(stderr.String(), "enrolling again with the token in "+tok) {
			t.Errorf("output:\n%s\n%s", stdout.String(), stderr.String())
		}
		if serialIn(t, certPath) == before {
			t.Error("the certificate file was not replaced")
		}
	})

	t.Run("the daemon enrolls again with --token-file and carries on", func(t *testing.T) {
		dir := t.TempDir()
		args, certPath := ca.workloadFiles(t, dir)
		before := serialIn(t, certPath)
		tok := filepath.Join(dir, "token")
		writeFile(t, tok, ca.wantToken, 0o600)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		stdout, stderr := &testkit.LockedBuffer{}, &testkit.LockedBuffer{}
		go func() { done <- cmdRenew(ctx, append(args, "--daemon", "--token-file", tok), noEnv, stdout, stderr) }()
		testkit.EventuallyTrue(t, 30*time.Second, "the daemon enrolls again", func() bool {
			select {
			case err := <-done:
				t.Fatalf("the daemon ended: %v\n%s", err, stderr.String())
			default:
			}
			return strings.Contains(stdout.String(), "enrolled again")
		})
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the daemon ended with %v after its context", err)
		}
		if serialIn(t, certPath) == before || !strings.Contains(stderr.String(), "requires re-authentication") {
			t.Errorf("after the daemon: serial %s (was %s)\n%s", serialIn(t, certPath), before, stderr.String())
		}
	})
}

// TestSIGUSR1ForcesOneRenewalPerSignal runs `ca renew --daemon` on a
// certificate that is not due for 40 minutes and forces renewals with
// SIGUSR1 sent to this process, one at a time (the stand-in CA answers each
// renewal with reauthentication_required, and the daemon enrolls again with
// --token-file: that is the renewal counted here).
func TestSIGUSR1ForcesOneRenewalPerSignal(t *testing.T) {
	ca := newReauthCA(t)
	noEnv := func(string) (string, bool) { return "", false }
	dir := t.TempDir()
	args, certPath := ca.workloadFilesValidFor(t, dir, time.Hour)
	tok := filepath.Join(dir, "token")
	writeFile(t, tok, ca.wantToken, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	stdout, stderr := &testkit.LockedBuffer{}, &testkit.LockedBuffer{}
	go func() { done <- cmdRenew(ctx, append(args, "--daemon", "--token-file", tok), noEnv, stdout, stderr) }()
	// The daemon announces its schedule after it listens for SIGUSR1.
	waitFor := func(what string, n int) {
		t.Helper()
		testkit.EventuallyTrue(t, 30*time.Second, what, func() bool {
			select {
			case err := <-done:
				t.Fatalf("the daemon ended: %v\n%s", err, stderr.String())
			default:
			}
			return strings.Count(stderr.String(), "next renewal of serial") >= n
		})
	}
	waitFor("the daemon's first schedule", 1)
	if strings.Contains(stdout.String(), "enrolled again") || ca.enrollments() != 0 {
		t.Fatalf("a certificate obtained now with 1h left was renewed at once:\n%s\n%s", stdout.String(), stderr.String())
	}
	for i := 1; i <= 2; i++ {
		before := serialIn(t, certPath)
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		waitFor("the daemon's schedule after the forced renewal", i+1)
		if got := ca.enrollments(); got != i {
			t.Errorf("after %d SIGUSR1: %d renewals, want %d", i, got, i)
		}
		if serialIn(t, certPath) == before {
			t.Errorf("SIGUSR1 %d: the certificate file was not replaced", i)
		}
	}
	if !strings.Contains(stderr.String(), "SIGUSR1: renewing serial") {
		t.Errorf("the forced renewal is not logged:\n%s", stderr.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("the daemon ended with %v after its context", err)
	}
}

func (c *reauthCA) enrollments() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enrolled
}
