package revoke

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
	"net/url"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// request builds an OCSP request for serial under issuer with hash h.
func request(t testing.TB, iss *x509.Certificate, serial *big.Int, h crypto.Hash) []byte {
	t.Helper()
	leaf := &x509.Certificate{SerialNumber: serial}
	der, err := ocsp.CreateRequest(leaf, iss, &ocsp.RequestOptions{Hash: h})
	if err != nil {
		t.Fatalf("CreateRequest: %v", err)
	}
	return der
}

func TestOCSPAnswersOnRealComponents(t *testing.T) {
	for _, b := range allBackends {
		t.Run(b.name, func(t *testing.T) {
			f := newFixture(t, b, shortConfig())
			p := f.publisher()
			rv := f.revoker(p)
			rs := f.responder()
			good, bad, fresh := f.leaf("good", 2*time.Hour), f.leaf("bad", 2*time.Hour), (*issuer.Issued)(nil)
			rep := f.refresh(p)
			if rep.OCSPSigned != 2 {
				t.Fatalf("first tick signed %d OCSP responses, want 2 (both leaves)", rep.OCSPSigned)
			}

			answer := func(req []byte) (Response, *ocsp.Response) {
				t.Helper()
				resp, err := rs.Respond(f.ctx, req)
				if err != nil {
					t.Fatalf("Respond: %v", err)
				}
				if resp.ThisUpdate.IsZero() {
					return resp, nil
				}
				parsed, err := ocsp.ParseResponseForCert(resp.DER, nil, f.inter)
				if err != nil {
					t.Fatalf("ParseResponse (%s): %v", resp.Status, err)
				}
				return resp, parsed
			}

			// good, from the store: no signature on the request path.
			before := f.keys.n.Load()
			for range 20 {
				resp, parsed := answer(request(t, f.inter, good.Certificate.SerialNumber, crypto.SHA1))
				if resp.Status != StatusGood || parsed.Status != ocsp.Good || parsed.SerialNumber.Cmp(good.Certificate.SerialNumber) != 0 {
					t.Fatalf("good leaf: %s / %d", resp.Status, parsed.Status)
				}
			}
			if n := f.keys.n.Load() - before; n != 0 {
				t.Errorf("20 answers for a pre-signed response made %d signatures, want 0", n)
			}
			_, parsed := answer(request(t, f.inter, good.Certificate.SerialNumber, crypto.SHA1))
			checkResponderCert(t, parsed.Certificate, f.inter)
			if !parsed.NextUpdate.Equal(parsed.ThisUpdate.Add(time.Hour)) {
				t.Errorf("window %s..%s, want 1h", parsed.ThisUpdate, parsed.NextUpdate)
			}

			// revoked: replaced by Revoke itself, before any tick.
			revokedAt := f.clk.Now().Truncate(time.Second)
			if _, _, err := rv.Revoke(f.ctx, bad.Serial, "keyCompromise", "op", "req"); err != nil {
				t.Fatal(err)
			}
			resp, parsed := answer(request(t, f.inter, bad.Certificate.SerialNumber, crypto.SHA1))
			if resp.Status != StatusRevoked || parsed.Status != ocsp.Revoked || parsed.RevocationReason != ocsp.KeyCompromise || !parsed.RevokedAt.Equal(revokedAt) {
				t.Errorf("revoked leaf: %s, status %d, reason %d at %s (want revoked, keyCompromise at %s)", resp.Status, parsed.Status, parsed.RevocationReason, parsed.RevokedAt, revokedAt)
			}

			// A leaf issued after the tick is signed lazily once, then stored.
			fresh = f.leaf("fresh", time.Hour)
			before = f.keys.n.Load()
			for range 3 {
				if resp, _ := answer(request(t, f.inter, fresh.Certificate.SerialNumber, crypto.SHA1)); resp.Status != StatusGood {
					t.Fatalf("fresh leaf: %s", resp.Status)
				}
			}
			if n := f.keys.n.Load() - before; n != 1 {
				t.Errorf("3 answers for a leaf without a stored response made %d signatures, want 1", n)
			}

			// unknown: a serial never issued.
			resp, parsed = answer(request(t, f.inter, big.NewInt(0x1234567890), crypto.SHA1))
			if resp.Status != StatusUnknown || parsed.Status != ocsp.Unknown {
				t.Errorf("never-issued serial: %s", resp.Status)
			}

			// A SHA-256 CertID is answered too (on the fly, then cached).
			resp, parsed = answer(request(t, f.inter, good.Certificate.SerialNumber, crypto.SHA256))
			if resp.Status != StatusGood || parsed.Status != ocsp.Good {
				t.Errorf("SHA-256 CertID: %s", resp.Status)
			}

			// malformed and unauthorized are the unsigned error answers.
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			foreign := selfSignedCA(t, other)
			for _, tc := range []struct {
				name string
				req  []byte
				want Status
				der  []byte
			}{
				{"garbage is malformedRequest", []byte("not an OCSP request"), StatusMalformed, ocsp.MalformedRequestErrorResponse},
				{"an empty body is malformedRequest", nil, StatusMalformed, ocsp.MalformedRequestErrorResponse},
				{"a truncated request is malformedRequest", request(t, f.inter, good.Certificate.SerialNumber, crypto.SHA1)[:30], StatusMalformed, ocsp.MalformedRequestErrorResponse},
				{"a request for another CA is unauthorized", request(t, foreign, good.Certificate.SerialNumber, crypto.SHA1), StatusUnauthorized, ocsp.UnauthorizedErrorResponse},
				{"a request naming the root is unauthorized", request(t, f.root, good.Certificate.SerialNumber, crypto.SHA1), StatusUnauthorized, ocsp.UnauthorizedErrorResponse},
			} {
				resp, err := rs.Respond(f.ctx, tc.req)
				if err != nil || resp.Status != tc.want || !bytes.Equal(resp.DER, tc.der) {
					t.Errorf("%s: got %s %x, %v", tc.name, resp.Status, resp.DER, err)
				}
				if _, err := ocsp.ParseResponse(resp.DER, nil); err == nil {
					t.Errorf("%s: the error answer parsed as a successful response", tc.name)
				}
			}
		})
	}
}

func checkResponderCert(t *testing.T, cert, parent *x509.Certificate) {
	t.Helper()
	if cert == nil {
		t.Fatal("the response carries no responder certificate")
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning {
		t.Errorf("responder EKU %v, want OCSPSigning", cert.ExtKeyUsage)
	}
	found := false
	for _, e := range cert.Extensions {
		found = found || e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5})
	}
	if !found {
		t.Error("responder certificate lacks id-pkix-ocsp-nocheck")
	}
	if err := cert.CheckSignatureFrom(parent); err != nil || !cert.NotAfter.Before(parent.NotAfter) {
		t.Errorf("responder not issued by the intermediate or outlives it: %v", err)
	}
}

func TestUnknownSerialsAreRateLimitedAndCached(t *testing.T) {
	cfg := shortConfig()
	cfg.UnknownRate, cfg.UnknownBurst = 1, 3
	f := newFixture(t, sqliteBackend, cfg)
	f.refresh(f.publisher()) // issues the responder
	rs := f.responder()
	ask := func(serial int64) Status {
		t.Helper()
		resp, err := rs.Respond(f.ctx, request(t, f.inter, big.NewInt(serial), crypto.SHA1))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	before := f.keys.n.Load()
	for i := int64(1); i <= 3; i++ {
		if s := ask(1000 + i); s != StatusUnknown {
			t.Fatalf("unknown serial %d within the burst: %s", i, s)
		}
	}
	if s := ask(2000); s != StatusTryLater {
		t.Errorf("a 4th distinct unknown serial with an empty bucket: %s, want try_later", s)
	}
	if s := ask(1001); s != StatusUnknown {
		t.Errorf("a repeated unknown serial: %s, want the cached unknown", s)
	}
	if n := f.keys.n.Load() - before; n != 3 {
		t.Errorf("%d signatures for 3 distinct unknown serials, want 3", n)
	}
	f.clk.Advance(2 * time.Second)
	if s := ask(2000); s != StatusUnknown {
		t.Errorf("after the bucket refilled: %s, want unknown", s)
	}
}

func TestDecodeGETRequestAcceptsClientVariants(t *testing.T) {
	der := []byte{0x30, 0xfb, 0xff, 0x3e, 0x01, 0x02, 0xfe}
	std := base64.StdEncoding.EncodeToString(der) // contains + and /
	cases := []struct {
		name, path string
	}{
		{"URL-encoded standard base64 decodes", url.PathEscape(std)},
		{"raw standard base64 with slashes decodes", std},
		{"'+' turned into ' ' decodes", string(bytes.ReplaceAll([]byte(std), []byte("+"), []byte(" ")))},
		{"URL-safe unpadded base64 decodes", base64.RawURLEncoding.EncodeToString(der)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeGETRequest(tc.path)
			if err != nil || !bytes.Equal(got, der) {
				t.Errorf("DecodeGETRequest(%q) = %x, %v", tc.path, got, err)
			}
		})
	}
	for _, bad := range []string{"%zz", "!!!", string(make([]byte, 3*MaxRequestSize))} {
		if _, err := DecodeGETRequest(bad); err == nil {
			t.Errorf("DecodeGETRequest(%.10q) accepted garbage", bad)
		}
	}
}
