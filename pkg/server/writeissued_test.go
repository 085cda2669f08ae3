package server

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// writeIssuedByEncoder is how writeIssued answered before it appended the
// answer itself: PEM by pem.EncodeToMemory, JSON by writeJSON.
func writeIssuedByEncoder(w http.ResponseWriter, is *issuer.Issued, spiffeID string) error {
	var chain strings.Builder
	for _, der := range is.Chain {
		chain.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	w.Header().Set("Location", "/v1/certificates/"+is.Serial)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, CertResponse{
		Serial:      is.Serial,
		SPIFFEID:    spiffeID,
		DNSNames:    is.Certificate.DNSNames,
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.DER})),
		Chain:       chain.String(),
		NotAfter:    is.NotAfter.UTC(),
	})
}

func TestWriteIssuedWritesWhatTheEncoderWrote(t *testing.T) {
	der := func(n int) []byte { return bytes.Repeat([]byte{0xfb, 0xff, 0x3e}, n)[:n] }
	at := time.Date(2026, 12, 5, 17, 0, 0, 123456789, time.FixedZone("X", -7200))
	for _, is := range []*issuer.Issued{
		{Serial: "0a1b", DER: der(700), Chain: [][]byte{der(480)}, NotAfter: at, Certificate: &x509.Certificate{}},
		{Serial: "ff", DER: der(48), Chain: [][]byte{der(47), der(49), der(96)}, NotAfter: at.Truncate(time.Second),
			Certificate: &x509.Certificate{DNSNames: []string{"a.example", "<b>&c"}}},
		{Serial: "x\"y", DER: der(1), NotAfter: time.Unix(0, 0), Certificate: &x509.Certificate{DNSNames: []string{}}},
		{Serial: "", DER: nil, Chain: [][]byte{{}}, NotAfter: at, Certificate: &x509.Certificate{}},
	} {
		for _, id := range []string{"spiffe://example.org/ci/acme/payments", "spiffe://example.org/<x>&\u2028\xff"} {
			want, got := httptest.NewRecorder(), httptest.NewRecorder()
			werr, gerr := writeIssuedByEncoder(want, is, id), writeIssued(got, is, id)
			if werr != nil || gerr != nil {
				t.Fatalf("errors: encoder %v, writeIssued %v", werr, gerr)
			}
			if got.Code != want.Code || !reflect.DeepEqual(got.Header(), want.Header()) || !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
				t.Errorf("serial %q, %q:\n got %d %v %s\nwant %d %v %s", is.Serial, id,
					got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
			}
		}
	}
	// A time JSON cannot carry fails as the encoder failed: the status is
	// written, the body is not.
	bad := &issuer.Issued{Serial: "01", DER: der(10), NotAfter: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Certificate: &x509.Certificate{}}
	want, got := httptest.NewRecorder(), httptest.NewRecorder()
	werr, gerr := writeIssuedByEncoder(want, bad, "spiffe://example.org/x"), writeIssued(got, bad, "spiffe://example.org/x")
	if werr == nil || gerr == nil || got.Code != want.Code || got.Body.Len() != 0 || want.Body.Len() != 0 {
		t.Errorf("year 10000: writeIssued %d %q %v, encoder %d %q %v", got.Code, got.Body, gerr, want.Code, want.Body, werr)
	}
}
