package server

import (
	"bytes"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/revoke"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/.

// FuzzParseRevokeRequest: any body is either accepted with a known reason or
// refused with a 4xx problem; never a panic, never a 5xx.
func FuzzParseRevokeRequest(f *testing.F) {
	for _, s := range []string{`{"reason":"keyCompromise"}`, `{}`, `{"reason":null}`, `{"reason":"x"}{"reason":"y"}`, "\xff", `{"reason":"superseded","reason":"cACompromise"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ParseRevokeRequest(bytes.NewReader(body))
		if err == nil {
			if _, cerr := revoke.ReasonCode(req.Reason); cerr != nil {
				t.Fatalf("accepted reason %q", req.Reason)
			}
			return
		}
		if kind, _, _ := classify(err); kind.Status() < 400 || kind.Status() >= 500 {
			t.Fatalf("status %d for %q: %v", kind.Status(), body, err)
		}
	})
}

// FuzzParseCertificateQuery: any query string gives a filter the store
// accepts (Query), or a 400 bad_request naming the problem.
func FuzzParseCertificateQuery(f *testing.F) {
	for _, s := range []string{"status=revoked&limit=2", "expiring_within=24h&identity_prefix=spiffe://example.org/", "issued_since=2025-01-01T00:00:00Z",
		"limit=1001", "cursor=MTcwMDAwMDAwMDAwMDAwMC5hYg", "status=active&status=active", "%zz", "identity=" + string(make([]byte, 3000))} {
		f.Add(s)
	}
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // net/http would have dropped the malformed pairs
		}
		filter, err := ParseCertificateQuery(q, now)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindInput || e.Reason != ReasonBadRequest {
				t.Fatalf("%q: %v", raw, err)
			}
			return
		}
		if _, err := filter.Query(); err != nil {
			if kind, reason, _ := classify(err); kind != KindInput || reason != ReasonBadRequest {
				t.Fatalf("%q: the store refuses the filter with %d %s: %v", raw, kind.Status(), reason, err)
			}
		}
	})
}

// FuzzParseAuditQuery: any query string parses or is a 400 bad_request.
func FuzzParseAuditQuery(f *testing.F) {
	for _, s := range []string{"after_seq=10&limit=5", "action=authz&decision=deny", "after_seq=-1", "limit=99999999999999999999", "decision=ALLOW"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseAuditQuery(v)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindInput {
				t.Fatalf("%q: %v", raw, err)
			}
			return
		}
		if q.AfterSeq < 0 || q.Limit < 1 || q.Limit > MaxAuditLimit {
			t.Fatalf("%q parsed to %+v", raw, q)
		}
	})
}
