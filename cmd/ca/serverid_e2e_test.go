package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// poserServer is a TLS server presenting a certificate the real CA issued
// to a workload for the CA's own host name (as a CA without the reserved
// names check would, if a policy granted it), and recording what `ca`
// clients send it.
type poserServer struct {
	url      string
	mu       sync.Mutex
	requests []string // "METHOD PATH auth=<Authorization header>"
}

func (p *poserServer) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// issuePoserCertificate opens the stopped development CA's
// data directory and issues, with the CA's own intermediate key, a workload
// certificate (spiffe://example.org/workload/poser) for "localhost", the
// name in the CA's server certificate. The issuer is configured without
// the reserved names, as the CA was before it refused them.
func issuePoserCertificate(t *testing.T, vars map[string]string) tls.Certificate {
	t.Helper()
	ctx := context.Background()
	cfg, err := loadConfig("", config.MapEnv(vars))
	if err != nil {
		t.Fatal(err)
	}
	b, err := openBackends(ctx, cfg, discardLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	icfg := issuerConfig(cfg)
	icfg.ReservedDNSNames, icfg.ReservedIPs = nil, nil
	iss, err := issuer.Load(ctx, b.deps, icfg)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	got, err := iss.Issue(ctx, issuer.Request{PublicKey: key.Public(), SPIFFEID: "spiffe://example.org/workload/poser",
		DNSNames: []string{"localhost"}, TTL: time.Hour, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: append([][]byte{got.DER}, got.Chain...), PrivateKey: key}
}

func startPoser(t *testing.T, pair tls.Certificate, bundle []byte) *poserServer {
	t.Helper()
	p := &poserServer{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests = append(p.requests, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
		p.mu.Unlock()
		if r.URL.Path == "/bundle.pem" {
			w.Header().Set("Content-Type", "application/pem-certificate-chain")
			_, _ = w.Write(bundle)
			return
		}
		http.Error(w, "collected", http.StatusTeapot)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p.url = "https://localhost:" + port
	return p
}

func TestCAClientsRefuseAServerPosingAsTheCAWithAWorkloadCertificate(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"CA_DATA_DIR": filepath.Join(dir, "data")}
	s := startServe(t, vars)
	_, bundle := get(t, &http.Client{Timeout: 10 * time.Second}, s.publicURL+"/bundle.pem")
	roots := parseCerts(bundle)
	if len(roots) == 0 {
		t.Fatal("no bundle")
	}
	pin := fingerprint(roots[0])
	// The real CA passes the check: its server certificate carries
	// spiffe://example.org/ca/server, read from the intermediate's name
	// constraints or given with --trust-domain.
	tokFile := filepath.Join(dir, "token")
	tok, errOut, code := runCA(t, vars, "dev-token", "--sub", "web")
	if code != 0 {
		t.Fatalf("ca dev-token: %d %s", code, errOut)
	}
	writeFile(t, tokFile, strings.TrimSpace(tok), 0o600)
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	enrollArgs := func(server, out string) []string {
		return []string{"enroll", "--server", server, "--token-file", tokFile, "--ca-fingerprint", pin,
			"--key", filepath.Join(out, "key.pem"), "--cert", filepath.Join(out, "cert.pem"),
			"--chain", filepath.Join(out, "chain.pem"), "--bundle", filepath.Join(out, "bundle.pem")}
	}
	if out, errOut, code := runCA(t, vars, enrollArgs(s.apiURL, real)...); code != 0 {
		t.Fatalf("ca enroll against the real CA: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := runCA(t, vars, append(enrollArgs(s.apiURL, real), "--trust-domain", "other.example")...); code == 0 ||
		!strings.Contains(errOut, "spiffe://other.example/ca/server") {
		t.Errorf("ca enroll expecting another trust domain: %d %s %s", code, out, errOut)
	}
	s.stop(t)

	pair := issuePoserCertificate(t, vars)
	poser := startPoser(t, pair, bundle)
	// The poser's certificate verifies for "localhost" against the pinned
	// root: a host-name check alone would accept it.
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, _ := x509.ParseCertificate(der)
		inter.AddCert(c)
	}
	pool := x509.NewCertPool()
	pool.AddCert(roots[0])
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool, Intermediates: inter}); err != nil {
		t.Fatalf("the poser's certificate does not verify for localhost: %v", err)
	}

	t.Run("ca enroll refuses to send its token", func(t *testing.T) {
		out := t.TempDir()
		_, errOut, code := runCA(t, vars, enrollArgs(poser.url, out)...)
		if code == 0 || !strings.Contains(errOut, "not the CA") || !strings.Contains(errOut, "spiffe://example.org/workload/poser") {
			t.Errorf("ca enroll against the poser: exit %d, %s", code, errOut)
		}
		for _, r := range poser.seen() {
			if strings.Contains(r, strings.TrimSpace(tok)) || strings.HasPrefix(r, "POST") {
				t.Errorf("the poser collected %q", r)
			}
		}
	})
	// A workload's own files, as `ca enroll` wrote them for the real CA.
	clientArgs := []string{"--key", filepath.Join(real, "key.pem"), "--cert", filepath.Join(real, "cert.pem"),
		"--chain", filepath.Join(real, "chain.pem"), "--bundle", filepath.Join(real, "bundle.pem")}
	t.Run("ca renew and ca jwt refuse the poser", func(t *testing.T) {
		for _, args := range [][]string{
			append([]string{"renew", "--server", poser.url}, clientArgs...),
			append([]string{"jwt", "--server", poser.url, "--audience", "x"}, clientArgs...),
		} {
			_, errOut, code := runCA(t, vars, args...)
			if code == 0 || !strings.Contains(errOut, "not the CA") {
				t.Errorf("ca %s against the poser: exit %d, %s", args[0], code, errOut)
			}
		}
	})
	t.Run("ca revoke refuses to send the operator token", func(t *testing.T) {
		opTok := filepath.Join(t.TempDir(), "op-token")
		writeFile(t, opTok, "operator-secret-token", 0o600)
		bundleFile := filepath.Join(t.TempDir(), "bundle.pem")
		writeFile(t, bundleFile, string(bundle), 0o600)
		_, errOut, code := runCA(t, vars, "revoke", "0a1b", "--reason", "keyCompromise", "--server", poser.url,
			"--token-file", opTok, "--ca-bundle", bundleFile)
		if code == 0 || !strings.Contains(errOut, "not the CA") {
			t.Errorf("ca revoke against the poser: exit %d, %s", code, errOut)
		}
	})
	for _, r := range poser.seen() {
		if strings.HasPrefix(r, "POST") || strings.Contains(r, "operator-secret-token") {
			t.Errorf("the poser received %q", r)
		}
	}
}
