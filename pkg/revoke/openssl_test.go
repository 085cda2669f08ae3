package revoke

import (
	"crypto"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// testHandler serves /crl/{issuer}.crl and /ocsp like pkg/server will, with
// the RFC 5019 caching headers, so that openssl can talk to a real HTTP
// server on loopback.
func testHandler(t *testing.T, rs *Responder) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /crl/{file}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutSuffix(r.PathValue("file"), ".crl")
		doc, err := rs.CRL(r.Context(), id)
		if !ok || errors.Is(err, store.ErrNotFound) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("ETag", doc.ETag())
		w.Header().Set("Last-Modified", doc.ThisUpdate.UTC().Format(http.TimeFormat))
		_, _ = w.Write(doc.DER)
	})
	answer := func(w http.ResponseWriter, r *http.Request, der []byte) {
		resp, err := rs.Respond(r.Context(), der)
		if err != nil {
			t.Logf("OCSP: %s: %v", resp.Status, err)
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(resp.DER)
	}
	mux.HandleFunc("POST /ocsp", func(w http.ResponseWriter, r *http.Request) {
		der, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestSize))
		if err != nil {
			der = nil
		}
		answer(w, r, der)
	})
	mux.HandleFunc("GET /ocsp/{req...}", func(w http.ResponseWriter, r *http.Request) {
		der, err := DecodeGETRequest(strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/"))
		if err != nil {
			der = nil
		}
		answer(w, r, der)
	})
	return mux
}

func needOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl is required in CI: %v", err)
		}
		t.Skipf("SKIPPING: NO OPENSSL on PATH, interop not checked: %v", err)
	}
	return path
}

func writePEM(t *testing.T, path, typ string, ders ...[]byte) string {
	t.Helper()
	var b []byte
	for _, der := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenSSLInterop(t *testing.T) {
	openssl := needOpenSSL(t)
	f := newFixture(t, sqliteBackend, shortConfig())
	p := f.publisher()
	rv := f.revoker(p)
	good, bad := f.leaf("good", time.Hour), f.leaf("bad", time.Hour)
	if _, _, err := rv.Revoke(f.ctx, bad.Serial, "keyCompromise", "op", "req"); err != nil {
		t.Fatal(err)
	}
	f.refresh(p)
	srv := httptest.NewServer(testHandler(t, f.responder()))
	defer srv.Close()

	dir := t.TempDir()
	root := writePEM(t, filepath.Join(dir, "root.pem"), "CERTIFICATE", f.root.Raw)
	inter := writePEM(t, filepath.Join(dir, "intermediate.pem"), "CERTIFICATE", f.inter.Raw)
	goodPEM := writePEM(t, filepath.Join(dir, "good.pem"), "CERTIFICATE", good.DER)
	badPEM := writePEM(t, filepath.Join(dir, "bad.pem"), "CERTIFICATE", bad.DER)

	// The CRL comes from the URL the leaves carry, rebased on the test server.
	crlURL := good.Certificate.CRLDistributionPoints[0]
	res, err := http.Get(srv.URL + crlURL[strings.Index(crlURL, "/crl/"):])
	if err != nil {
		t.Fatal(err)
	}
	crlDER, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("ETag") == "" {
		t.Fatalf("GET CRL: %s, ETag %q", res.Status, res.Header.Get("ETag"))
	}
	crl := writePEM(t, filepath.Join(dir, "crl.pem"), "X509 CRL", crlDER)

	run := func(args ...string) (string, error) {
		out, err := exec.Command(openssl, args...).CombinedOutput()
		return string(out), err
	}
	verify := func(leaf string) (string, error) {
		return run("verify", "-crl_check", "-CAfile", root, "-untrusted", inter, "-CRLfile", crl, leaf)
	}
	if out, err := verify(goodPEM); err != nil || !strings.Contains(out, "OK") {
		t.Errorf("openssl verify -crl_check of the good leaf failed: %v\n%s", err, out)
	}
	if out, err := verify(badPEM); err == nil || !strings.Contains(out, "certificate revoked") {
		t.Errorf("openssl verify -crl_check of the revoked leaf: %v\n%s", err, out)
	}

	ocspURL := srv.URL + "/ocsp"
	query := func(target ...string) string {
		t.Helper()
		args := append([]string{"ocsp", "-issuer", inter, "-url", ocspURL, "-CAfile", root, "-verify_other", inter}, target...)
		out, err := run(args...)
		if err != nil {
			t.Errorf("openssl %v: %v\n%s", args, err, out)
		}
		if !strings.Contains(out, "Response verify OK") {
			t.Errorf("openssl did not verify the responder signature:\n%s", out)
		}
		return out
	}
	if out := query("-cert", goodPEM); !strings.Contains(out, goodPEM+": good") {
		t.Errorf("openssl ocsp for the good leaf:\n%s", out)
	}
	if out := query("-cert", badPEM); !strings.Contains(out, badPEM+": revoked") || !strings.Contains(out, "Reason: keyCompromise") {
		t.Errorf("openssl ocsp for the revoked leaf:\n%s", out)
	}
	if out := query("-no_nonce", "-serial", "0x4142434445464748494a"); !strings.Contains(out, ": unknown") {
		t.Errorf("openssl ocsp for a never-issued serial:\n%s", out)
	}
	// GET with the base64 request in the path (RFC 6960 appendix A.1).
	req := request(t, f.inter, bad.Certificate.SerialNumber, crypto.SHA1)
	res, err = http.Get(ocspURL + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(req)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if parsed, err := ocsp.ParseResponseForCert(body, bad.Certificate, f.inter); err != nil || parsed.Status != ocsp.Revoked {
		t.Errorf("GET /ocsp/{base64}: %v, %+v", err, parsed)
	}
	t.Logf("openssl verify and openssl ocsp agree: good, revoked (keyCompromise), unknown")
}
