package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/internal/testkit/cafixture"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/revoke"
)

func init() {
	openapi3filter.RegisterBodyDecoder("application/pkix-crl", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/ocsp-response", openapi3filter.FileBodyDecoder)
}

// revocationCA is a real CA (software keys, SQLite) with pkg/revoke's
// Publisher and a Responder on the same store, for the CRL/OCSP route tests
// and benchmarks.
type revocationCA struct {
	clk       *clock.Fake
	iss       *issuer.Issuer
	rd        revoke.Deps
	rcfg      revoke.Config
	pub       *revoke.Publisher
	responder *revoke.Responder
}

func newRevocationCA(tb testing.TB) *revocationCA {
	tb.Helper()
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	keys, st := testkit.SoftwareKeys(tb), testkit.SQLite(tb)
	iss := cafixture.New(tb, keys, st, clk, nil).Issuer
	rd := revoke.Deps{Store: st, Keys: keys, Clock: clk}
	rcfg := revoke.Config{CRLValidity: time.Hour, OCSPValidity: time.Hour}
	pub, err := revoke.NewPublisher(rd, rcfg)
	if err != nil {
		tb.Fatal(err)
	}
	responder, err := revoke.NewResponder(rd, rcfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &revocationCA{clk: clk, iss: iss, rd: rd, rcfg: rcfg, pub: pub, responder: responder}
}

// TestCRLAndOCSPRoutesServeThePublishedArtifacts runs the public listener
// over a real CA (software keys, SQLite), pkg/revoke's Publisher, Revoker
// and Responder, and checks the answers and their headers, and every
// exchange against api/openapi.yaml.
func TestCRLAndOCSPRoutesServeThePublishedArtifacts(t *testing.T) {
	ctx := context.Background()
	ca := newRevocationCA(t)
	clk, iss, pub, responder := ca.clk, ca.iss, ca.pub, ca.responder
	rv, err := revoke.NewRevoker(ca.rd, ca.rcfg, pub)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *issuer.Issued {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		got, err := iss.Issue(ctx, issuer.Request{PublicKey: k.Public(), SPIFFEID: "spiffe://example.org/svc", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	good, bad := issue(), issue()
	if _, _, err := rv.Revoke(ctx, bad.Serial, "superseded", "op", "req"); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.RefreshOnce(ctx); err != nil {
		t.Fatal(err)
	}

	f := newFixtureWith(t, func(_ *fixture, d *Deps) { d.Revocation = responder; d.Clock = clk })
	srv := httptest.NewServer(f.routes.Public())
	defer srv.Close()
	router, err := gorillamux.NewRouter(loadOpenAPI(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path string, body []byte, header map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		res.Body = io.NopCloser(bytes.NewReader(b))
		validateExchange(t, router, req, res)
		return res, b
	}
	inter := iss.Certificate()
	ocspReq := func(serial *big.Int) []byte {
		der, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: serial}, inter, nil)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}

	crlPath := "/crl/" + iss.ActiveIssuerID() + ".crl"
	res, body := do("GET", crlPath, nil, nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET %s: %d %s", crlPath, res.StatusCode, res.Header.Get("Content-Type"))
	}
	rl, err := x509.ParseRevocationList(body)
	if err != nil || rl.CheckSignatureFrom(inter) != nil || len(rl.RevokedCertificateEntries) != 1 {
		t.Fatalf("served CRL: %v, %d entries", err, len(rl.RevokedCertificateEntries))
	}
	if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=3600, no-transform, must-revalidate" {
		t.Errorf("CRL Cache-Control %q, want max-age up to nextUpdate (3600)", cc)
	}
	if lm := res.Header.Get("Last-Modified"); lm != rl.ThisUpdate.UTC().Format(http.TimeFormat) {
		t.Errorf("Last-Modified %q, want thisUpdate %s", lm, rl.ThisUpdate)
	}
	if res, _ := do("GET", crlPath, nil, map[string]string{"If-None-Match": res.Header.Get("ETag")}); res.StatusCode != 304 {
		t.Errorf("CRL with its ETag in If-None-Match: %d, want 304", res.StatusCode)
	}
	if res, _ := do("GET", "/crl/nobody.crl", nil, nil); res.StatusCode != 404 {
		t.Errorf("CRL of an unknown issuer: %d, want 404", res.StatusCode)
	}

	for _, tc := range []struct {
		name   string
		serial *big.Int
		want   int
	}{
		{"a good leaf is good", good.Certificate.SerialNumber, ocsp.Good},
		{"a revoked leaf is revoked", bad.Certificate.SerialNumber, ocsp.Revoked},
		{"a never-issued serial is unknown", big.NewInt(424242), ocsp.Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := ocspReq(tc.serial)
			res, body := do("POST", "/ocsp", req, map[string]string{"Content-Type": "application/ocsp-request"})
			if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/ocsp-response" {
				t.Fatalf("POST /ocsp: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
			}
			if parsed, err := ocsp.ParseResponse(body, inter); err != nil || parsed.Status != tc.want {
				t.Errorf("POST answer: %v, %+v", err, parsed)
			}
			res, body = do("GET", "/ocsp/"+url.PathEscape(base64.StdEncoding.EncodeToString(req)), nil, nil)
			if parsed, err := ocsp.ParseResponse(body, inter); res.StatusCode != 200 || err != nil || parsed.Status != tc.want {
				t.Fatalf("GET answer: %d, %v", res.StatusCode, err)
			}
			if res.Header.Get("ETag") == "" || res.Header.Get("Expires") == "" || res.Header.Get("Last-Modified") == "" {
				t.Errorf("GET answer lacks RFC 5019 caching headers: %v", res.Header)
			}
		})
	}
	// The server-wide body limit applies before the responder: a problem,
	// like every other endpoint.
	if res, _ := do("POST", "/ocsp", make([]byte, 2000), nil); res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /ocsp over the body limit: %d, want 413", res.StatusCode)
	}
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		want               []byte
	}{
		{"a garbage POST body is malformedRequest", "POST", "/ocsp", []byte("garbage"), ocsp.MalformedRequestErrorResponse},
		{"a GET path that is not base64 is malformedRequest", "GET", "/ocsp/%25%25%25", nil, ocsp.MalformedRequestErrorResponse},
		{"a request for a CA we do not serve is unauthorized", "POST", "/ocsp", func() []byte {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true, SubjectKeyId: []byte{1}}
			der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
			other, _ := x509.ParseCertificate(der)
			req, _ := ocsp.CreateRequest(good.Certificate, other, &ocsp.RequestOptions{Hash: crypto.SHA1})
			return req
		}(), ocsp.UnauthorizedErrorResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := do(tc.method, tc.path, tc.body, nil)
			if res.StatusCode != 200 || !bytes.Equal(body, tc.want) || res.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%d %x (Cache-Control %q), want 200 %x no-store", res.StatusCode, body, res.Header.Get("Cache-Control"), tc.want)
			}
		})
	}
}
