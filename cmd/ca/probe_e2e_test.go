package main

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/pkg/mtls"
)

// TestMTLSWithCertificatesIssuedByCAServe runs the real `ca serve`
// (development setup), probes its API listener with `ca probe` against
// /bundle.json, enrolls two workloads through `ca dev-token` + `ca enroll`,
// and has a pkg/mtls server and client handshake with those certificates in
// both directions, trusting /bundle.json and asking the CA's own CRL and OCSP
// fail-closed: a peer whose revocation status the CA does not publish is
// refused, so the handshakes prove that `ca serve` serves both.
func TestMTLSWithCertificatesIssuedByCAServe(t *testing.T) {
	vars := map[string]string{"CA_DATA_DIR": filepath.Join(t.TempDir(), "data")}
	s := startServe(t, vars)
	bundleURL := s.publicURL + "/bundle.json"

	apiAddr := strings.TrimPrefix(s.apiURL, "https://")
	stdout, stderr, code := runCA(t, nil, "probe", apiAddr, "--bundle-url", bundleURL, "--expect-id", "spiffe://example.org/ca/server", "--json")
	r := decodeProbe(t, stdout)
	if code != 0 || !r.OK || !r.ChainVerified || !r.Authorized || r.Protocol != "TLS 1.3" {
		t.Fatalf("ca probe of the API listener: exit %d, %+v\n%s", code, r, stderr)
	}
	t.Logf("ca serve API certificate: %s, expires in %s, CRL %+v, OCSP %+v", r.PeerID, r.PeerChain[0].ExpiresIn, r.CRL, r.OCSP)

	dir := t.TempDir()
	enroll := func(sub string) mtls.CertPaths {
		t.Helper()
		tok, stderr, code := runCA(t, vars, "dev-token", "--sub", sub)
		if code != 0 {
			t.Fatalf("ca dev-token: %d %s", code, stderr)
		}
		f := func(n string) string { return filepath.Join(dir, sub+"-"+n) }
		if err := os.WriteFile(f("token"), []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		out, stderr, code := runCA(t, nil, "enroll", "--server", s.apiURL, "--token-file", f("token"),
			"--key", f("key.pem"), "--cert", f("cert.pem"), "--chain", f("chain.pem"), "--bundle", f("bundle.pem"))
		if code != 0 {
			t.Fatalf("ca enroll %s: %d\n%s%s", sub, code, out, stderr)
		}
		return mtls.CertPaths{Cert: f("cert.pem"), Key: f("key.pem"), Chain: f("chain.pem")}
	}
	web, db := enroll("web"), enroll("db")
	webID, dbID := spiffeid.RequireFromString("spiffe://example.org/dev/web"), spiffeid.RequireFromString("spiffe://example.org/dev/db")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bundle, err := mtls.NewHTTPBundle(ctx, mtls.HTTPBundleConfig{URL: bundleURL, TrustDomain: spiffeid.RequireTrustDomainFromString("example.org")})
	if err != nil {
		t.Fatal(err)
	}
	config := func(own mtls.CertPaths, peer spiffeid.ID, rejects *[]mtls.Rejection) mtls.Config {
		files, err := mtls.LoadCertFiles(own, nil)
		if err != nil {
			t.Fatal(err)
		}
		rev, err := mtls.NewRevocationChecker(mtls.RevocationConfig{CRL: true, OCSP: true})
		if err != nil {
			t.Fatal(err)
		}
		return mtls.Config{Bundles: bundle, Identity: files, Authorize: mtls.AuthorizeID(peer), Revocation: rev,
			OnReject: func(r mtls.Rejection) { *rejects = append(*rejects, r) }}
	}
	for _, tc := range []struct {
		name               string
		server, client     mtls.CertPaths
		serverID, clientID spiffeid.ID
	}{
		{"web serves db", web, db, webID, dbID},
		{"db serves web", db, web, dbID, webID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srvRejects, cliRejects []mtls.Rejection
			scfg, err := mtls.ServerTLSConfig(config(tc.server, tc.clientID, &srvRejects))
			if err != nil {
				t.Fatal(err)
			}
			ccfg, err := mtls.ClientTLSConfig(config(tc.client, tc.serverID, &cliRejects))
			if err != nil {
				t.Fatal(err)
			}
			addr := serveTLS(t, scfg)
			conn, err := tls.Dial("tcp", addr, ccfg)
			if err != nil {
				t.Fatalf("handshake: %v (server rejections %+v, client rejections %+v)", err, srvRejects, cliRejects)
			}
			defer conn.Close()
			if id, err := mtls.PeerID(conn.ConnectionState()); err != nil || id != tc.serverID {
				t.Errorf("peer = %v, %v", id, err)
			}
			// The server's verdict arrives after the client's handshake in
			// TLS 1.3: a read that times out means it accepted us.
			_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := conn.Read(make([]byte, 1)); err != nil {
				if _, rejected := mtls.Classify(err); rejected {
					t.Fatalf("the server rejected the client: %v (%+v)", err, srvRejects)
				}
			}
			if len(srvRejects)+len(cliRejects) != 0 {
				t.Errorf("rejections: %+v %+v", srvRejects, cliRejects)
			}
		})
	}

	t.Run("ca probe presents an enrolled certificate to a pkg/mtls server", func(t *testing.T) {
		var rejects []mtls.Rejection
		scfg, err := mtls.ServerTLSConfig(config(web, dbID, &rejects))
		if err != nil {
			t.Fatal(err)
		}
		addr := serveTLS(t, scfg)
		stdout, stderr, code := runCA(t, nil, "probe", addr, "--bundle-url", bundleURL, "--expect-id", webID.String(),
			"--client-cert", db.Cert, "--client-key", db.Key, "--client-chain", db.Chain, "--json")
		r := decodeProbe(t, stdout)
		if code != 0 || !r.OK || r.ServerVerdict != "accepted" || r.CRL == nil || r.OCSP == nil || r.CRL.Status != "good" || r.OCSP.Status != "good" {
			t.Fatalf("exit %d, %+v, crl %+v, ocsp %+v\n%s", code, r, r.CRL, r.OCSP, stderr)
		}
		t.Logf("revocation as ca serve publishes it now: CRL %+v, OCSP %+v", *r.CRL, *r.OCSP)
	})
}
