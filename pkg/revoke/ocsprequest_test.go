package revoke

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// FuzzParseOCSPRequestMatchesXCrypto checks parseRequest against
// ocsp.ParseRequest, the parser it replaces on the hot path: for any input,
// both refuse it, or both accept it with the same hash algorithm, issuer
// name and key hashes, and serial number. It also holds parseRequestFast
// to its own contract: fastAccepted only with x/crypto's fields, fastRefused
// only for what x/crypto refuses.
//
// Differences from x/crypto: none are allowed. Where x/crypto's behaviour
// is odd, parseRequestFast answers fastUnsure and parseRequest asks
// x/crypto, so the responder's answers are unchanged. The odd cases are:
//   - elements after tbsRequest other than a constructed [0] signature
//     (e.g. a primitive [0], or any other tag) are ignored by encoding/asn1,
//     so x/crypto accepts such requests as unsigned;
//   - requestorName is decoded as an RDNSequence rather than the RFC's
//     GeneralName, so x/crypto refuses every RFC-shaped requestorName and
//     accepts a bare Name;
//   - explicit tags' own lengths are not checked against their contents;
//   - hash parameters may be any element, and later Requests any valid OID.
//
// The seed corpus (testdata/fuzz/FuzzParseOCSPRequestMatchesXCrypto) holds
// openssl requests with and without a nonce, SHA-1/256/384 and MD5 CertIDs,
// two Requests, a signed request, Go's CreateRequest output, and garbage;
// the f.Add seeds below add the rarer shapes. Plain `go test` replays them.
func FuzzParseOCSPRequestMatchesXCrypto(f *testing.F) {
	for _, s := range handMadeRequests() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		want, wantErr := ocsp.ParseRequest(der)
		got, gotErr := parseRequest(der)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("x/crypto error %v, parseRequest error %v", wantErr, gotErr)
		}
		if wantErr == nil {
			sameRequest(t, "parseRequest", got, want)
		}
		fast, v := parseRequestFast(der)
		switch v {
		case fastAccepted:
			if wantErr != nil {
				t.Fatalf("fast path accepts what x/crypto refuses: %v", wantErr)
			}
			sameRequest(t, "parseRequestFast", fast, want)
		case fastRefused:
			if wantErr == nil {
				t.Fatalf("fast path refuses what x/crypto accepts: %+v", want)
			}
		}
	})
}

func sameRequest(t *testing.T, who string, got, want *ocsp.Request) {
	t.Helper()
	if got.HashAlgorithm != want.HashAlgorithm ||
		!bytes.Equal(got.IssuerNameHash, want.IssuerNameHash) ||
		!bytes.Equal(got.IssuerKeyHash, want.IssuerKeyHash) ||
		(got.SerialNumber == nil) != (want.SerialNumber == nil) ||
		got.SerialNumber != nil && got.SerialNumber.Cmp(want.SerialNumber) != 0 {
		t.Fatalf("%s = %+v, x/crypto %+v", who, got, want)
	}
}

// handMadeRequests builds the rarer shapes around one SHA-1 CertID.
func handMadeRequests() [][]byte {
	sha1 := []byte{0x2b, 0x0e, 0x03, 0x02, 0x1a}
	certID := func(b *cryptobyte.Builder, oid []byte, params []byte, serial []byte) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(oid) })
				b.AddBytes(params)
			})
			b.AddASN1OctetString(bytes.Repeat([]byte{1}, 20))
			b.AddASN1OctetString(bytes.Repeat([]byte{2}, 20))
			b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(serial) })
		})
	}
	build := func(beforeList, afterReqCert, afterList, afterTBS []byte, oid, params, serial []byte) []byte {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(beforeList)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						certID(b, oid, params, serial)
						b.AddBytes(afterReqCert)
					})
				})
				b.AddBytes(afterList)
			})
			b.AddBytes(afterTBS)
		})
		return b.BytesOrPanic()
	}
	null := []byte{0x05, 0x00}
	serial := []byte{0x01, 0x23}
	rdn := []byte{0xa1, 0x11, 0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x04, 't', 'e', 's', 't'}
	return [][]byte{
		build(nil, nil, nil, nil, sha1, nil, serial),                                        // no parameters
		build(nil, nil, nil, nil, sha1, null, []byte{0xff}),                                 // negative serial
		build(nil, nil, nil, nil, sha1, null, []byte{0x00, 0x01}),                           // non-minimal serial
		build(nil, nil, nil, nil, sha1, []byte{0x04, 0x00}, serial),                         // odd parameters
		build([]byte{0xa0, 0x03, 0x02, 0x01, 0x00}, nil, nil, nil, sha1, null, serial),      // explicit version 0
		build(rdn, nil, nil, nil, sha1, null, serial),                                       // requestorName as a Name
		build([]byte{0xa1, 0x02, 0x82, 0x00}, nil, nil, nil, sha1, null, serial),            // requestorName as a GeneralName
		build(nil, []byte{0xa0, 0x02, 0x30, 0x00}, nil, nil, sha1, null, serial),            // singleRequestExtensions
		build(nil, nil, []byte{0xa2, 0x02, 0x30, 0x00}, nil, sha1, null, serial),            // requestExtensions
		build(nil, nil, []byte{0xff}, nil, sha1, null, serial),                              // garbage after requestList
		build(nil, nil, nil, []byte{0xa0, 0x02, 0x30, 0x00}, sha1, null, serial),            // signature
		build(nil, nil, nil, []byte{0x80, 0x01, 0x00}, sha1, null, serial),                  // primitive [0] after tbsRequest
		build(nil, nil, nil, nil, []byte{0x2b, 0x0e, 0x03, 0x02, 0x80, 0x1a}, null, serial), // non-minimal OID
	}
}

// TestParseRequestFastTakesRealRequests keeps the fast path honest: the
// requests real clients send must not fall back to x/crypto.
func TestParseRequestFastTakesRealRequests(t *testing.T) {
	for _, name := range []string{
		"openssl-sha1-no-nonce", "openssl-sha1-nonce", "openssl-sha256-no-nonce",
		"openssl-sha256-nonce", "openssl-sha384", "openssl-two-requests-nonce",
		"go-SHA-1-160bit-serial", "go-SHA-256-160bit-serial", "go-SHA-512-160bit-serial",
	} {
		t.Run(name+" is decoded without x/crypto", func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzParseOCSPRequestMatchesXCrypto", name))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			quoted, ok := strings.CutSuffix(strings.TrimPrefix(lines[len(lines)-1], "[]byte("), ")")
			if !ok {
				t.Fatalf("unexpected corpus line %q", lines[len(lines)-1])
			}
			der, err := strconv.Unquote(quoted)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ocsp.ParseRequest([]byte(der))
			if err != nil {
				t.Fatalf("x/crypto refuses it: %v", err)
			}
			got, v := parseRequestFast([]byte(der))
			if v != fastAccepted {
				t.Fatalf("verdict %d, want fastAccepted", v)
			}
			sameRequest(t, "parseRequestFast", got, want)
		})
	}
}
