package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseCertRequestByDecoder is ParseCertRequest as it was before its fast
// path: every body through encoding/json's decoder.
func parseCertRequestByDecoder(body []byte) (csrPEM []byte, ttl time.Duration, err error) {
	bad := func(detail string) error {
		return &Error{Kind: KindInput, Reason: ReasonBadRequest, Detail: detail}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	var req CertRequest
	if err := dec.Decode(&req); err != nil {
		return nil, 0, bad("the body must be a JSON object {\"csr\": PEM, \"ttl\": \"15m\"} without other fields")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, 0, bad("trailing data after the JSON object")
	}
	if strings.TrimSpace(req.CSR) == "" {
		return nil, 0, bad("csr is required")
	}
	if req.TTL != "" {
		ttl, err = time.ParseDuration(req.TTL)
		if err != nil {
			return nil, 0, bad("ttl is not a duration such as \"15m\"")
		}
		switch {
		case ttl < 0:
			return nil, 0, &Error{Kind: KindInput, Reason: ReasonTTLInvalid, Detail: "ttl must not be negative"}
		case ttl == 0:
			return nil, 0, &Error{Kind: KindInput, Reason: ReasonTTLInvalid, Detail: "ttl must be positive (omit it for the rule's default)"}
		case ttl > maxRequestTTL:
			return nil, 0, &Error{Kind: KindInput, Reason: ReasonTTLTooLong, Detail: "ttl exceeds 720h"}
		}
	}
	return []byte(req.CSR), ttl, nil
}

var certRequestSeeds = []string{
	`{"csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB/+=\n-----END CERTIFICATE REQUEST-----\n","ttl":"10m"}`,
	`{"csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"}` + "\n",
	`{"csr":"PEM","ttl":""}`, `{"csr":"","ttl":"1m"}`, `{"csr":" \n ","ttl":"1m"}`, `{"csr":"\n"}`, `{"csr":"PEM","ttl":"-1m"}`,
	`{"csr":"PEM","ttl":"0s"}`, `{"csr":"PEM","ttl":"721h"}`, `{"csr":"PEM","ttl":"soon"}`, `{"csr":"PEM","ttl":"1m","ttl":"2m"}`,
	`{"csr":"a","csr":"b"}`, `{"CSR":"PEM"}`, `{"csr":"PEM","TTL":"1m"}`, `{"ttl":"1m","csr":"PEM"}`, `{"csr":"PEM"} {}`,
	`{"csr":"PEM"}x`, `{"csr":"PEM"} ` + "\t\r\n", `{"csr":"a\\nb"}`, `{"csr":"a\\tb"}`, `{"csr":"a\\u0041"}`, `{"csr":"a\\"}`,
	`{"csr":"a\\n`, `{"csr":"a`, `{"csr":"é"}`, "{\"csr\":\"a\x01\"}", "{\"csr\":\"a\xff\"}", `{"csr":"PEM","admin":true}`,
	`{"csr": "PEM"}`, `{ "csr":"PEM"}`, `{"csr":"PEM" }`, `{"csr":"PEM","ttl":"1m" }`, `{"csr":null}`, `{"csr":42}`, `null`, `[]`, ``,
	`{"csr":"PEM","ttl":"1m"`, `{"csr":"PEM",}`, `{"csr":"PEM","ttl":1}`, `{"csr":"\\n\\n"}`, `{"csr":"x","ttl":"1\\n"}`,
}

// sameCertRequest compares two ParseCertRequest answers.
func sameCertRequest(t *testing.T, body []byte) {
	t.Helper()
	csr, ttl, err := ParseCertRequest(body)
	wcsr, wttl, werr := parseCertRequestByDecoder(body)
	if !bytes.Equal(csr, wcsr) || ttl != wttl || !reflect.DeepEqual(err, werr) {
		t.Errorf("body %q: ParseCertRequest = %q %v %v; the decoder: %q %v %v", body, csr, ttl, err, wcsr, wttl, werr)
	}
}

func TestParseCertRequestFastPathMatchesTheDecoder(t *testing.T) {
	for _, body := range certRequestSeeds {
		sameCertRequest(t, []byte(body))
	}
	// The bodies `ca enroll` and `ca renew` send take the fast path.
	for _, req := range []CertRequest{{CSR: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB/+=\n-----END CERTIFICATE REQUEST-----\n", TTL: "15m"}, {CSR: "PEM"}} {
		body, _ := json.Marshal(req)
		if csr, ttl, ok := certRequestFast(body); !ok || string(csr) != req.CSR || ttl != req.TTL {
			t.Errorf("%s: fast path = %q %q %v", body, csr, ttl, ok)
		}
	}
}

func FuzzParseCertRequestFastPath(f *testing.F) {
	for _, body := range certRequestSeeds {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { sameCertRequest(t, body) })
}
