package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

func noEnv(string) (string, bool) { return "", false }

// runInProcess runs a `ca` command in this process.
func runInProcess(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, noEnv, &out, &errb)
	return out.String(), errb.String(), code
}

// kitDir is a `ca testkit` directory whose CRL is served over loopback at
// the URL written into the credentials.
type kitDir struct {
	dir string
	m   *testca.Manifest
}

func (k kitDir) path(rel string) string { return filepath.Join(k.dir, filepath.FromSlash(rel)) }

func (k kitDir) cred(t *testing.T, name string) testca.ManifestCredential {
	t.Helper()
	for _, c := range k.m.Credentials {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no credential %s", name)
	return testca.ManifestCredential{}
}

func writeKit(t *testing.T) kitDir {
	t.Helper()
	dir := t.TempDir()
	files := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(files.Close)
	stdout, stderr, code := runInProcess(t, "testkit", "--out", dir, "--crl-url", files.URL+"/ca/crl/testkit.crl")
	if code != 0 {
		t.Fatalf("ca testkit: %d %s%s", code, stdout, stderr)
	}
	m, err := testca.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return kitDir{dir: dir, m: m}
}

// serveTLS runs a TLS server on loopback that handshakes every connection
// with cfg and keeps it open until the client closes it. OnReject-style
// results are the caller's business.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err == nil {
					_, _ = c.Read(make([]byte, 1))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func decodeProbe(t *testing.T, stdout string) probeReport {
	t.Helper()
	var r probeReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("probe --json output %q: %v", stdout, err)
	}
	return r
}

func TestTestkitWritesAKitWithAManifest(t *testing.T) {
	k := writeKit(t)
	if !strings.Contains(k.m.Warning, "THROWAWAY") || k.m.TrustDomain != "example.org" || len(k.m.Credentials) != 9 {
		t.Fatalf("manifest: %+v", k.m)
	}
	for _, rel := range []string{k.m.BundlePEM, k.m.BundleJSON, k.m.UntrustedRootPEM, k.m.CRL.File} {
		if _, err := os.Stat(k.path(rel)); err != nil {
			t.Errorf("%s: %v", rel, err)
		}
	}
	for _, c := range k.m.Credentials {
		if fi, err := os.Stat(k.path(c.Key)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s key: %v %v", c.Name, fi, err)
		}
		if _, err := tls.LoadX509KeyPair(k.path(c.Cert), k.path(c.Key)); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	if _, _, code := runInProcess(t, "testkit"); code != exitUsage {
		t.Errorf("ca testkit without --out: exit %d, want %d", code, exitUsage)
	}
}

// TestProbeAgainstServersPresentingEachTestkitCredential runs `ca probe
// --json` against a server presenting each credential and checks the report
// and the exit status.
func TestProbeAgainstServersPresentingEachTestkitCredential(t *testing.T) {
	k := writeKit(t)
	for _, c := range k.m.Credentials {
		t.Run(c.Name+" is "+c.ExpectAsServer, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(k.path(c.Cert), k.path(c.Key))
			if err != nil {
				t.Fatal(err)
			}
			addr := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{pair}})
			stdout, stderr, code := runInProcess(t, "probe", addr, "--bundle", k.path(k.m.BundleJSON),
				"--expect-id", k.m.AuthorizedID, "--json", "--settle", "100ms")
			r := decodeProbe(t, stdout)
			if r.Protocol != "TLS 1.3" || r.CipherSuite == "" || len(r.PeerChain) != 2 || r.PeerID != c.SPIFFEID {
				t.Errorf("report: protocol %q cipher %q chain %d id %q", r.Protocol, r.CipherSuite, len(r.PeerChain), r.PeerID)
			}
			if r.PeerChain[0].Serial != c.Serial || r.PeerChain[0].ExpiresInMinutes == 0 {
				t.Errorf("leaf: %+v", r.PeerChain[0])
			}
			if c.ExpectAsServer == testca.Accept {
				if code != exitOK || !r.OK || r.Reason != "" || !r.ChainVerified || !r.Authorized || r.CRL == nil || r.CRL.Status != "good" {
					t.Fatalf("want ok: exit %d, report %+v, crl %+v\n%s", code, r, r.CRL, stderr)
				}
				return
			}
			if code != exitError || r.OK || r.Reason != c.ExpectAsServer || r.ReasonFrom != "probe" || r.Detail == "" {
				t.Fatalf("want %s: exit %d, report %+v\n%s", c.ExpectAsServer, code, r, stderr)
			}
			if !strings.Contains(stderr, "probe failed: "+c.ExpectAsServer) {
				t.Errorf("stderr %q", stderr)
			}
			switch c.Name {
			case testca.Revoked:
				if !r.ChainVerified || r.CRL == nil || r.CRL.Status != "revoked" || r.CRL.RevokedAt == nil {
					t.Errorf("revoked: chain verified %v, crl %+v", r.ChainVerified, r.CRL)
				}
			case testca.WrongID:
				if !r.ChainVerified || r.Authorized {
					t.Errorf("wrong id: chain verified %v, authorized %v", r.ChainVerified, r.Authorized)
				}
			case testca.WrongCA, testca.Expired, testca.NotYetValid:
				if r.ChainVerified {
					t.Error("the chain is reported as verified")
				}
			}
		})
	}
}

// TestProbeWithEachTestkitCredentialAsClient presents each credential to a
// pkg/mtls server: the server logs the reason; the probe reports the
// server's verdict from its alert.
func TestProbeWithEachTestkitCredentialAsClient(t *testing.T) {
	k := writeKit(t)
	good := k.cred(t, testca.Good)
	bundle, err := mtls.LoadBundleFile(spiffeid.RequireTrustDomainFromString(k.m.TrustDomain), k.path(k.m.BundleJSON))
	if err != nil {
		t.Fatal(err)
	}
	own, err := mtls.LoadCertFiles(mtls.CertPaths{Cert: k.path(good.Cert), Key: k.path(good.Key)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := mtls.NewRevocationChecker(mtls.RevocationConfig{CRL: true})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var rejected []mtls.Reason
	cfg, err := mtls.ServerTLSConfig(mtls.Config{
		Bundles: bundle, Identity: own, Revocation: rev,
		Authorize: mtls.AuthorizeID(spiffeid.RequireFromString(k.m.AuthorizedID)),
		OnReject:  func(r mtls.Rejection) { mu.Lock(); rejected = append(rejected, r.Reason); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, cfg)
	for _, c := range k.m.Credentials {
		t.Run(c.Name+" is "+c.ExpectAsClient, func(t *testing.T) {
			mu.Lock()
			rejected = nil
			mu.Unlock()
			stdout, stderr, code := runInProcess(t, "probe", addr, "--bundle", k.path(k.m.BundlePEM), "--expect-id", k.m.AuthorizedID,
				"--client-cert", k.path(c.Cert), "--client-key", k.path(c.Key), "--json", "--settle", "300ms")
			r := decodeProbe(t, stdout)
			if r.ClientCert == nil || r.ClientCert.Serial != c.Serial {
				t.Errorf("client certificate in the report: %+v", r.ClientCert)
			}
			mu.Lock()
			got := append([]mtls.Reason(nil), rejected...)
			mu.Unlock()
			if c.ExpectAsClient == testca.Accept {
				if code != exitOK || !r.OK || r.ServerVerdict != "accepted" || len(got) != 0 {
					t.Fatalf("want accepted: exit %d, report %+v, server rejections %v\n%s", code, r, got, stderr)
				}
				return
			}
			if code != exitError || r.ServerVerdict != "rejected" || r.ServerReason != string(mtls.ReasonRejectedByPeer) || r.ReasonFrom != "server" {
				t.Errorf("want the server's rejection: exit %d, report %+v", code, r)
			}
			if len(got) != 1 || string(got[0]) != c.ExpectAsClient {
				t.Errorf("the server's reasons = %v, want [%s]", got, c.ExpectAsClient)
			}
		})
	}
}

func TestProbeTextOutputAndUsage(t *testing.T) {
	k := writeKit(t)
	c := k.cred(t, testca.Expired)
	pair, err := tls.LoadX509KeyPair(k.path(c.Cert), k.path(c.Key))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{pair}})
	stdout, _, code := runInProcess(t, "probe", addr, "--bundle", k.path(k.m.BundlePEM), "--settle", "50ms")
	if code != exitError || !strings.Contains(stdout, "RESULT: FAILED, reason expired") || !strings.Contains(stdout, "chain verifies against the bundle: false") {
		t.Errorf("exit %d, output:\n%s", code, stdout)
	}
	for _, args := range [][]string{
		{"probe"},
		{"probe", "127.0.0.1:1"},
		{"probe", "nohostport", "--bundle", "x"},
		{"probe", "127.0.0.1:1", "--bundle", "x", "--client-cert", "c"},
		{"probe", "127.0.0.1:1", "--bundle", "x", "--expect-id", "https://not-spiffe"},
	} {
		if _, _, code := runInProcess(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	stdout, _, code = runInProcess(t, "probe", closed, "--bundle", k.path(k.m.BundlePEM), "--json")
	if r := decodeProbe(t, stdout); code != exitError || r.OK || r.Error == "" {
		t.Errorf("closed port: exit %d, %+v", code, r)
	}
}
