package revoke

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// FuzzOCSPRequest feeds arbitrary bytes to the responder, as a POST body and
// as a GET path: it must never panic or fail to answer, and every answer is
// either a response that parses and verifies against the CA, or one of the
// RFC 6960 error answers. The seed corpus is in testdata/fuzz; plain `go
// test` replays it.
func FuzzOCSPRequest(f *testing.F) {
	fx := newFixture(f, sqliteBackend, shortConfig())
	p := fx.publisher()
	leaf := fx.leaf("fuzz", 2*time.Hour)
	fx.refresh(p)
	rs := fx.responder()
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign := selfSignedCA(f, other)
	f.Add(request(f, fx.inter, leaf.Certificate.SerialNumber, crypto.SHA1))
	f.Add(request(f, fx.inter, leaf.Certificate.SerialNumber, crypto.SHA256))
	f.Add(request(f, fx.inter, big.NewInt(1), crypto.SHA1))
	f.Add(request(f, foreign, leaf.Certificate.SerialNumber, crypto.SHA1))

	errorAnswers := [][]byte{ocsp.MalformedRequestErrorResponse, ocsp.UnauthorizedErrorResponse,
		ocsp.TryLaterErrorResponse, ocsp.InternalErrorErrorResponse}
	check := func(t *testing.T, req []byte) {
		resp, _ := rs.Respond(fx.ctx, req)
		if len(resp.DER) == 0 {
			t.Fatalf("empty answer (%s)", resp.Status)
		}
		for _, e := range errorAnswers {
			if bytes.Equal(resp.DER, e) {
				return
			}
		}
		if _, err := ocsp.ParseResponse(resp.DER, fx.inter); err != nil {
			t.Fatalf("signed answer (%s) does not verify: %v", resp.Status, err)
		}
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		check(t, req)
		if der, err := DecodeGETRequest(string(req)); err == nil {
			check(t, der)
		}
	})
}
