package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// TestRevocationEndToEnd runs on SoftHSM and Postgres: a revoker revokes a
// leaf over REST, revoking again reports the first revocation unchanged, and
// the inventory and the audit log show it.
func TestRevocationEndToEnd(t *testing.T) {
	o := newOperatorServer(t, testkit.SoftHSMKeyStore(t))
	leaf, _ := o.leaf("spiffe://example.org/prod/payments", time.Hour)
	other, _ := o.leaf("spiffe://example.org/prod/ledger", time.Hour)
	revoker := creds{bearer: o.token("rita", "pki-revokers")}
	auditor := creds{bearer: o.token("audrey", "pki-auditors")}

	res, body := o.call(revoker, "POST", "/v1/certificates/"+strings.ToUpper(leaf.Serial)+"/revoke", `{"reason":"keyCompromise"}`, "revoke-1")
	if res.StatusCode != 200 {
		t.Fatalf("revoke: %d %s", res.StatusCode, body)
	}
	first := decode[RevokeResponse](t, body)
	if first.AlreadyRevoked || first.Certificate.Status != store.CertRevoked || first.Certificate.RevocationReason != "keyCompromise" ||
		first.Certificate.RevokedAt == nil || first.Certificate.Serial != leaf.Serial {
		t.Fatalf("first revocation answered %+v", first)
	}

	o.clk.Advance(time.Minute)
	res, body = o.call(revoker, "POST", "/v1/certificates/"+leaf.Serial+"/revoke", `{"reason":"superseded"}`, "revoke-2")
	again := decode[RevokeResponse](t, body)
	if res.StatusCode != 200 || !again.AlreadyRevoked || again.Certificate.RevocationReason != "keyCompromise" ||
		!again.Certificate.RevokedAt.Equal(*first.Certificate.RevokedAt) {
		t.Fatalf("second revocation answered %d %+v; want the first one unchanged", res.StatusCode, again)
	}

	refusals := []struct {
		name, path, body string
		status           int
		reason           Reason
	}{
		{"an unknown reason is revocation_reason_invalid", "/v1/certificates/" + other.Serial + "/revoke", `{"reason":"certificateHold"}`, 400, ReasonRevocationReasonInvalid},
		{"a missing reason is bad_request", "/v1/certificates/" + other.Serial + "/revoke", `{}`, 400, ReasonBadRequest},
		{"an unknown field is bad_request", "/v1/certificates/" + other.Serial + "/revoke", `{"reason":"superseded","when":"now"}`, 400, ReasonBadRequest},
		{"an unknown serial is not_found", "/v1/certificates/abcdef0123/revoke", `{"reason":"superseded"}`, 404, ReasonNotFound},
		{"a serial that is not hex is bad_request", "/v1/certificates/xyz/revoke", `{"reason":"superseded"}`, 400, ReasonBadRequest},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			res, body := o.call(revoker, "POST", tt.path, tt.body, "")
			if res.StatusCode != tt.status || decodeProblem(t, res).Reason != tt.reason {
				t.Errorf("got %d %s, want %d %s", res.StatusCode, body, tt.status, tt.reason)
			}
		})
	}
	if c, err := o.st.GetCertificate(o.ctx, other.Serial); err != nil || c.Status != store.CertActive {
		t.Fatalf("a refused revocation changed the certificate: %+v %v", c, err)
	}

	res, body = o.call(auditor, "GET", "/v1/certificates?status=revoked", "", "")
	page := decode[CertificatePage](t, body)
	if res.StatusCode != 200 || len(page.Items) != 1 || page.Items[0].Serial != leaf.Serial || page.Items[0].Status != store.CertRevoked {
		t.Fatalf("revoked list: %d %s", res.StatusCode, body)
	}
	res, body = o.call(auditor, "GET", "/v1/certificates/"+leaf.Serial, "", "")
	detail := decode[CertificateView](t, body)
	var prov map[string]any
	_ = json.Unmarshal(detail.Provenance, &prov)
	if res.StatusCode != 200 || detail.Status != store.CertRevoked || detail.RevocationReason != "keyCompromise" ||
		!strings.HasPrefix(detail.Certificate, "-----BEGIN CERTIFICATE-----") || prov["policy_rule"] != "ci" || detail.PolicyRule != "ci" {
		t.Fatalf("detail: %d %s", res.StatusCode, body)
	}

	res, body = o.call(auditor, "GET", "/v1/audit?action=revoke", "", "")
	audit := decode[AuditPage](t, body)
	if res.StatusCode != 200 || len(audit.Items) != 1 {
		t.Fatalf("audit of revocations: %d %s", res.StatusCode, body)
	}
	if e := audit.Items[0]; e.Actor != "corp-idp:rita" || e.Target != leaf.Serial || e.Decision != "allow" || e.RequestID != "revoke-1" || e.Hash == "" {
		t.Errorf("revocation audit entry = %+v", e)
	}
}

func TestTheInventoryPagesAndFilters(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	auditor := creds{bearer: o.token("audrey", "pki-auditors")}
	var serials []string
	for i, id := range []string{"spiffe://example.org/ci/a", "spiffe://example.org/ci/b", "spiffe://example.org/prod/x", "spiffe://example.org/ci/c", "spiffe://example.org/prod/y"} {
		ttl := time.Hour
		if i == 4 {
			ttl = 10 * time.Minute
		}
		got, _ := o.leaf(id, ttl)
		serials = append(serials, got.Serial)
		o.clk.Advance(time.Second) // distinct issuance times, newest first
	}

	// All pages of two, following the cursor, see every leaf once.
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		q := url.Values{"limit": {"2"}, "identity_prefix": {"spiffe://example.org/"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		res, body := o.call(auditor, "GET", "/v1/certificates?"+q.Encode(), "", "")
		page := decode[CertificatePage](t, body)
		if res.StatusCode != 200 || len(page.Items) > 2 {
			t.Fatalf("page %d: %d %s", pages, res.StatusCode, body)
		}
		for _, c := range page.Items {
			if seen[c.Serial] {
				t.Fatalf("serial %s on two pages", c.Serial)
			}
			seen[c.Serial] = true
		}
		pages++
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	for _, s := range serials {
		if !seen[s] {
			t.Errorf("leaf %s never listed", s)
		}
	}

	filters := []struct {
		name, query string
		want        []string
	}{
		{"identity matches exactly", "identity=spiffe://example.org/ci/b", []string{serials[1]}},
		{"identity_prefix selects a subtree, by identity", "identity_prefix=spiffe://example.org/prod/", []string{serials[2], serials[4]}},
		{"expiring_within alone selects the soon-expiring", "expiring_within=15m", []string{serials[4]}},
		{"expiring_within selects the soon-expiring", "expiring_within=30m&identity_prefix=spiffe://example.org/prod/", []string{serials[4]}},
		{"expired shows what passed not_after", "status=expired", nil},
	}
	for _, tt := range filters {
		t.Run(tt.name, func(t *testing.T) {
			res, body := o.call(auditor, "GET", "/v1/certificates?"+tt.query, "", "")
			page := decode[CertificatePage](t, body)
			var got []string
			for _, c := range page.Items {
				got = append(got, c.Serial)
			}
			if res.StatusCode != 200 || strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %d %v, want %v", res.StatusCode, got, tt.want)
			}
		})
	}

	// After 30 minutes the short-lived leaf is expired, derived at answer time.
	o.clk.Advance(30 * time.Minute)
	auditor = creds{bearer: o.token("audrey", "pki-auditors")} // the first one expired meanwhile
	res, body := o.call(auditor, "GET", "/v1/certificates?status=expired", "", "")
	page := decode[CertificatePage](t, body)
	if res.StatusCode != 200 || len(page.Items) != 1 || page.Items[0].Serial != serials[4] || page.Items[0].Status != store.CertExpired {
		t.Errorf("expired: %d %s", res.StatusCode, body)
	}

	bad := []string{
		"status=valid", "expiring_within=soon", "expiring_within=-1h", "limit=0", "limit=1001", "limit=ten",
		"issued_since=yesterday", "cursor=not-a-cursor!", "colour=blue", "status=active&status=revoked",
	}
	for _, q := range bad {
		t.Run("bad query "+q+" is bad_request", func(t *testing.T) {
			res, body := o.call(auditor, "GET", "/v1/certificates?"+q, "", "")
			if res.StatusCode != 400 || decodeProblem(t, res).Reason != ReasonBadRequest {
				t.Errorf("got %d %s", res.StatusCode, body)
			}
		})
	}
}

func TestTheAuditEndpointFiltersAndPages(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	auditor := creds{bearer: o.token("audrey", "pki-auditors")}
	for range 3 {
		o.leaf("spiffe://example.org/ci/a", time.Hour)
	}
	// Two denials: an anonymous one and a forbidden one.
	o.call(creds{}, "GET", "/v1/audit", "", "deny-anon")
	o.call(creds{bearer: o.token("rita", "pki-revokers")}, "GET", "/v1/audit", "", "deny-role")

	res, body := o.call(auditor, "GET", "/v1/audit?action=authz&decision=deny", "", "")
	page := decode[AuditPage](t, body)
	if res.StatusCode != 200 || len(page.Items) != 2 || page.NextAfterSeq != nil {
		t.Fatalf("denials: %d %s", res.StatusCode, body)
	}
	if a, b := page.Items[0], page.Items[1]; a.Actor != "anonymous" || a.Reason != "unauthorized" || b.Actor != "corp-idp:rita" ||
		b.Reason != "forbidden" || b.Target != "GET /v1/audit" || a.Seq >= b.Seq || b.PrevHash == "" {
		t.Errorf("denials = %+v", page.Items)
	}

	// Paging by one entry follows the chain: each prev_hash is the previous hash.
	var prevHash string
	after := int64(0)
	for i := 0; ; i++ {
		res, body := o.call(auditor, "GET", "/v1/audit?limit=1&after_seq="+strconv.FormatInt(after, 10), "", "")
		page := decode[AuditPage](t, body)
		if res.StatusCode != 200 || len(page.Items) > 1 {
			t.Fatalf("page %d: %d %s", i, res.StatusCode, body)
		}
		if len(page.Items) == 1 {
			e := page.Items[0]
			if i > 0 && e.PrevHash != prevHash {
				t.Fatalf("entry %d prev_hash %s, previous hash %s", e.Seq, e.PrevHash, prevHash)
			}
			prevHash = e.Hash
		}
		if page.NextAfterSeq == nil {
			break
		}
		after = *page.NextAfterSeq
	}
	if prevHash == "" {
		t.Fatal("no audit entries")
	}

	for _, q := range []string{"after_seq=-1", "limit=0", "decision=maybe", "seq=3", "limit=2&limit=3"} {
		res, body := o.call(auditor, "GET", "/v1/audit?"+q, "", "")
		if res.StatusCode != 400 || decodeProblem(t, res).Reason != ReasonBadRequest {
			t.Errorf("%s: got %d %s", q, res.StatusCode, body)
		}
	}
}

func TestDenialAuditsAreRateLimitedAndCountTheSkipped(t *testing.T) {
	l := &denialLimiter{rate: 2, burst: 3}
	now := time.Unix(1000, 0)
	for i := range 3 {
		if _, ok := l.take(now); !ok {
			t.Fatalf("take %d within the burst refused", i)
		}
	}
	for range 5 {
		if _, ok := l.take(now); ok {
			t.Fatal("take beyond the burst allowed")
		}
	}
	skipped, ok := l.take(now.Add(500 * time.Millisecond)) // one token refilled
	if !ok || skipped != 5 {
		t.Fatalf("after refill: ok=%v skipped=%d, want true 5", ok, skipped)
	}
	if skipped, ok := l.take(now.Add(time.Hour)); !ok || skipped != 0 {
		t.Fatalf("later: ok=%v skipped=%d", ok, skipped)
	}
}

func TestParseRevokeRequest(t *testing.T) {
	tests := []struct {
		name, body string
		reason     Reason // "" when accepted
	}{
		{"a known reason is accepted", `{"reason":"keyCompromise"}`, ""},
		{"whitespace around the object is fine", " {\"reason\": \"unspecified\"}\n", ""},
		{"certificateHold is refused as revocation_reason_invalid", `{"reason":"certificateHold"}`, ReasonRevocationReasonInvalid},
		{"case matters in reason names", `{"reason":"keycompromise"}`, ReasonRevocationReasonInvalid},
		{"an empty body is bad_request", ``, ReasonBadRequest},
		{"a missing reason is bad_request", `{}`, ReasonBadRequest},
		{"a numeric reason is bad_request", `{"reason":1}`, ReasonBadRequest},
		{"an unknown field is bad_request", `{"reason":"superseded","x":1}`, ReasonBadRequest},
		{"two objects are bad_request", `{"reason":"superseded"}{"reason":"superseded"}`, ReasonBadRequest},
		{"trailing garbage is bad_request", `{"reason":"superseded"} x`, ReasonBadRequest},
		{"an array is bad_request", `[{"reason":"superseded"}]`, ReasonBadRequest},
		{"an oversized body is body_too_large", `{"reason":"superseded","pad":"` + strings.Repeat("a", 5000) + `"}`, ReasonBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRevokeRequest(strings.NewReader(tt.body))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if _, reason, _ := classify(err); reason != tt.reason {
				t.Errorf("reason = %s (%v), want %s", reason, err, tt.reason)
			}
		})
	}
}

func TestParseCertificateQuery(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	f, err := ParseCertificateQuery(url.Values{
		"identity_prefix": {"spiffe://example.org/ci/"}, "status": {"active"}, "expiring_within": {"36h"},
		"issuer": {"int-1"}, "issued_since": {"2025-01-01T00:00:00Z"}, "limit": {"50"}, "cursor": {"abc"},
	}, now)
	want := store.CertificateFilter{IdentityPrefix: "spiffe://example.org/ci/", Status: store.CertActive, ExpiringWithin: 36 * time.Hour,
		IssuerID: "int-1", IssuedSince: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Limit: 50, Cursor: "abc", Now: now}
	if err != nil || f != want {
		t.Fatalf("got %+v %v, want %+v", f, err, want)
	}
	var e *Error
	if _, err := ParseCertificateQuery(url.Values{"bogus": {"1"}}, now); !errors.As(err, &e) || e.Kind.Status() != 400 || !strings.Contains(e.Detail, `"bogus"`) {
		t.Errorf("unknown parameter: %v", err)
	}
}

// failingStatus is the store with GetCertificate down.
type failingStatus struct{ OperatorStore }

func (failingStatus) GetCertificate(context.Context, string) (store.Certificate, error) {
	return store.Certificate{}, fmt.Errorf("get: %w", store.ErrUnavailable)
}

func TestUnavailableDependenciesAreA503NotA401(t *testing.T) {
	o := newOperatorServer(t, softwareKeys(t))
	_, glass := o.leaf(breakGlassID, time.Hour)

	// The IdP is down before its keys were ever fetched.
	o.idp.SetDown(true)
	res, body := o.call(creds{bearer: o.token("ada", "pki-admins")}, "GET", "/v1/audit", "", "idp-down")
	if res.StatusCode != 503 || decodeProblem(t, res).Reason != ReasonTokenIssuerUnavailable {
		t.Errorf("IdP down: %d %s", res.StatusCode, body)
	}
	o.idp.SetDown(false)

	// The database cannot say whether the client certificate is revoked.
	real := o.routes.d.Operators.Store
	o.routes.d.Operators.Store = failingStatus{real}
	res, body = o.call(creds{cert: &glass}, "GET", "/v1/audit", "", "db-down")
	o.routes.d.Operators.Store = real
	if res.StatusCode != 503 || decodeProblem(t, res).Reason != ReasonStoreUnavailable {
		t.Errorf("store down: %d %s", res.StatusCode, body)
	}

	audit := o.auditByRequestID()
	for id, reason := range map[string]Reason{"idp-down": ReasonTokenIssuerUnavailable, "db-down": ReasonStoreUnavailable} {
		if es := audit[id]; len(es) != 1 || es[0].Action != "authz" || es[0].Decision != "deny" || es[0].Reason != string(reason) {
			t.Errorf("%s audited as %+v", id, es)
		}
	}
}

// BenchmarkOperatorRequest is one authorised GET /v1/certificates/{serial}
// through the router (bearer token verified with cached keys, roles from CEL,
// one Postgres read), without TLS.
func BenchmarkOperatorRequest(b *testing.B) {
	o := newOperatorServer(b, softwareKeys(b))
	o.routes.d.Log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	o.routes.edge.log = o.routes.d.Log
	leaf, _ := o.leaf("spiffe://example.org/prod/payments", time.Hour)
	token := o.token("audrey", "pki-auditors")
	h := o.routes.API()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/v1/certificates/"+leaf.Serial, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkOperatorDenial is one anonymous request refused with 401 and
// its audit append (Postgres); the fixture lifts the denial rate limit, so
// every denial is appended.
func BenchmarkOperatorDenial(b *testing.B) {
	o := newOperatorServer(b, softwareKeys(b))
	o.routes.d.Log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	o.routes.edge.log = o.routes.d.Log
	h := o.routes.API()
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/audit", nil))
		if rec.Code != 401 {
			b.Fatalf("%d", rec.Code)
		}
	}
}
