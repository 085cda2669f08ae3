package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// memRecords is an in-memory EnrollStore for this package's unit tests; the
// end-to-end tests in cmd/ca use Postgres.
type memRecords struct {
	mu       sync.Mutex
	certs    map[string]store.Certificate
	lineages map[string]json.RawMessage // an enrollment's provenance by lineage, as the stores keep it
	audit    []store.AuditEntry
	used     map[string]bool
}

func newMemRecords() *memRecords {
	return &memRecords{certs: map[string]store.Certificate{}, lineages: map[string]json.RawMessage{}, used: map[string]bool{}}
}

func (m *memRecords) MarkTokenUsed(_ context.Context, key string, _, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used[key] {
		return fmt.Errorf("token %w", store.ErrConflict)
	}
	m.used[key] = true
	return nil
}

func (m *memRecords) GetCertificate(_ context.Context, serial string) (store.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.certs[serial]
	if !ok {
		return c, store.ErrNotFound
	}
	c.Origin = m.lineages[c.Lineage]
	return c, nil
}

func (m *memRecords) AppendAudit(_ context.Context, e store.AuditEntry) (store.AuditEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.Seq = int64(len(m.audit) + 1)
	m.audit = append(m.audit, e)
	return e, nil
}

func (m *memRecords) denials() []store.AuditEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.AuditEntry
	for _, e := range m.audit {
		if e.Decision == "deny" {
			out = append(out, e)
		}
	}
	return out
}

// fixtureEnroll gives every fixture the enrollment routes over memRecords.
func fixtureEnroll(t testing.TB, f *fixture) EnrollDeps {
	f.records = newMemRecords()
	return EnrollDeps{Issuer: &testLeafIssuer{t: t, ca: f.ca, records: f.records}, Records: f.records}
}

// testLeafIssuer signs with the fixture's test CA and records into
// memRecords, as issuer.Issue records into the store.
type testLeafIssuer struct {
	t       testing.TB
	ca      *testCA
	records *memRecords
}

func (li *testLeafIssuer) Issue(_ context.Context, r issuer.Request) (*issuer.Issued, error) {
	now := li.ca.clock.Now()
	u, err := url.Parse(r.SPIFFEID)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	cert := mustCert(li.t, &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(r.TTL),
		URIs: []*url.URL{u}, DNSNames: r.DNSNames, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, li.ca.inter, r.PublicKey, li.ca.interKey)
	der := cert.Raw
	sn := fmt.Sprintf("%x", cert.SerialNumber)
	li.records.mu.Lock()
	defer li.records.mu.Unlock()
	rec := store.Certificate{
		Serial: sn, SPIFFEID: r.SPIFFEID, DNSNames: r.DNSNames, DER: der, NotAfter: cert.NotAfter, Status: store.CertActive,
		Provenance: r.Provenance, PolicyRule: r.PolicyRule, PolicyVersion: r.PolicyVersion, RenewedFrom: r.RenewedFrom,
		Lineage: sn, Repository: r.Repository, TokenIssuer: r.TokenIssuer, Subject: r.Subject, LineageStartedAt: now, CreatedAt: now,
	}
	if r.RenewedFrom != "" { // as the stores record a renewal: once, inheriting the lineage
		prev, ok := li.records.certs[r.RenewedFrom]
		switch {
		case !ok:
			return nil, store.ErrNotFound
		case prev.SupersededBy != "":
			return nil, fmt.Errorf("test issuer: %w", store.ErrSuperseded)
		}
		prev.SupersededBy = sn
		li.records.certs[r.RenewedFrom] = prev
		rec.Lineage, rec.Repository, rec.TokenIssuer, rec.Subject = prev.Lineage, prev.Repository, prev.TokenIssuer, prev.Subject
		rec.LineageStartedAt = prev.LineageStartedAt
	} else if len(r.Provenance) > 0 {
		li.records.lineages[sn] = r.Provenance
	}
	li.records.certs[sn] = rec
	return &issuer.Issued{Serial: sn, Certificate: cert, DER: der, Chain: [][]byte{li.ca.inter.Raw}, NotAfter: cert.NotAfter}, nil
}

// enrollFixture is a running server whose policy trusts a test OIDC issuer.
type enrollFixture struct {
	*fixture
	rs      *runningServer
	oidc    *testkit.OIDCIssuer
	records *memRecords
}

func newEnrollFixture(t *testing.T) *enrollFixture {
	t.Helper()
	return newEnrollFixtureWith(t, nil)
}

// newEnrollFixtureWith lets a test adjust the dependencies further.
func newEnrollFixtureWith(t *testing.T, adjust func(f *fixture, d *Deps)) *enrollFixture {
	t.Helper()
	oidc := testkit.NewOIDCIssuer(t)
	pol := acmePolicy(t, oidc)
	f := newFixtureWith(t, func(f *fixture, d *Deps) {
		d.Policy = policy.NewHolder(pol)
		d.Verifier = enroll.NewVerifier(d.Clock, enroll.WithHTTPClient(oidc.Client()))
		d.BodyLimit = 64 << 10
		if adjust != nil {
			adjust(f, d)
		}
	})
	return &enrollFixture{fixture: f, rs: startServer(t, f), oidc: oidc, records: f.records}
}

func csrPEM(t testing.TB) (*ecdsa.PrivateKey, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func postJSON(t *testing.T, c *http.Client, url, token string, body any) (*http.Request, *http.Response) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// Let validators re-read the request body.
	req.Body = nopBody(raw)
	return req, res
}

func nopBody(b []byte) *bodyReader { return &bodyReader{bytes.NewReader(b)} }

type bodyReader struct{ *bytes.Reader }

func (bodyReader) Close() error { return nil }

func TestEnrollAndRenewAnswersMatchTheOpenAPIDocument(t *testing.T) {
	f := newEnrollFixture(t)
	doc := loadOpenAPI(t, f.rs.apiURL, f.rs.publicURL)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	client := f.rs.client()

	key, csr := csrPEM(t)
	req, res := postJSON(t, client, f.rs.apiURL+"/v1/enroll", f.oidc.GitHubToken(t, nil), CertRequest{CSR: csr, TTL: "10m"})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("enroll = %d %s", res.StatusCode, decodeProblem(t, res).Detail)
	}
	var got CertResponse
	body := readAll(t, res)
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	res.Body = nopBody(body)
	validateExchange(t, router, req, res)
	if got.SPIFFEID != "spiffe://example.org/ci/acme/payments" || !strings.Contains(got.Chain, "BEGIN CERTIFICATE") {
		t.Errorf("enroll answer = %+v", got)
	}

	// Renew over mTLS with the new certificate, for a new key.
	block, _ := pem.Decode([]byte(got.Certificate))
	mtls := f.rs.client(tls.Certificate{Certificate: [][]byte{block.Bytes, f.ca.inter.Raw}, PrivateKey: key})
	key2, csr2 := csrPEM(t)
	req, res = postJSON(t, mtls, f.rs.apiURL+"/v1/renew", "", CertRequest{CSR: csr2})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("renew = %d %s", res.StatusCode, decodeProblem(t, res).Detail)
	}
	var renewed CertResponse
	body = readAll(t, res)
	_ = json.Unmarshal(body, &renewed)
	res.Body = nopBody(body)
	validateExchange(t, router, req, res)
	rec, _ := f.records.GetCertificate(context.Background(), renewed.Serial)
	if rec.RenewedFrom != got.Serial || rec.SPIFFEID != got.SPIFFEID || rec.PolicyRule != "acme-ci" {
		t.Errorf("renewed record = %+v", rec)
	}
	var origin map[string]any
	_ = json.Unmarshal(rec.Origin, &origin)
	if origin == nil || origin["shape"] != enroll.ShapeGitHub || strings.Contains(string(rec.Provenance), "token_claims") {
		t.Errorf("the renewal's record does not find the enrollment's provenance in its lineage (or repeats it): origin %s, provenance %s", rec.Origin, rec.Provenance)
	}

	if rec.Lineage != got.Serial {
		t.Errorf("renewal lineage %q, want the enrollment's serial %s", rec.Lineage, got.Serial)
	}
	block2, _ := pem.Decode([]byte(renewed.Certificate))
	mtls2 := f.rs.client(tls.Certificate{Certificate: [][]byte{block2.Bytes, f.ca.inter.Raw}, PrivateKey: key2})

	// Refusals, each validated against the document and audited.
	_, sameKeyCSR := csrPEMFor(t, key2)
	_, csr3 := csrPEM(t)
	refusals := []struct {
		name   string
		client *http.Client
		path   string
		token  string
		body   any
		status int
		reason Reason
	}{
		{"enroll without Authorization is unauthorized", client, "/v1/enroll", "", CertRequest{CSR: csr}, 401, ReasonUnauthorized},
		{"a replayed token is token_replayed", client, "/v1/enroll", "", CertRequest{CSR: csr}, 401, ReasonTokenReplayed},
		{"a foreign repository is policy_denied", client, "/v1/enroll", f.oidc.GitHubToken(t, map[string]any{"repository_owner": "evil"}), CertRequest{CSR: csr}, 403, ReasonPolicyDenied},
		{"a body with unknown fields is bad_request", client, "/v1/enroll", f.oidc.GitHubToken(t, nil), map[string]any{"csr": csr, "x": 1}, 400, ReasonBadRequest},
		{"renew without a client certificate is unauthorized", client, "/v1/renew", "", CertRequest{CSR: csr2}, 401, ReasonUnauthorized},
		{"renew with the current key is key_reused", mtls2, "/v1/renew", "", CertRequest{CSR: sameKeyCSR}, 400, ReasonKeyReused},
		{"renewing the superseded certificate again is certificate_superseded", mtls, "/v1/renew", "", CertRequest{CSR: csr3}, 403, ReasonCertificateSuperseded},
	}
	replayed := f.oidc.GitHubToken(t, nil)
	_, res = postJSON(t, client, f.rs.apiURL+"/v1/enroll", replayed, CertRequest{CSR: csr})
	res.Body.Close()
	refusals[1].token = replayed
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.records.denials())
			req, res := postJSON(t, tt.client, f.rs.apiURL+tt.path, tt.token, tt.body)
			body := readAll(t, res)
			res.Body = nopBody(body)
			validateExchange(t, router, req, res)
			var p Problem
			_ = json.Unmarshal(body, &p)
			if res.StatusCode != tt.status || p.Reason != tt.reason {
				t.Fatalf("got %d %s (%s), want %d %s", res.StatusCode, p.Reason, p.Detail, tt.status, tt.reason)
			}
			d := f.records.denials()
			if len(d) != before+1 || d[len(d)-1].Reason != string(tt.reason) {
				t.Fatalf("denial not audited: %+v", d)
			}
			if tt.token != "" && strings.Contains(string(d[len(d)-1].Details), tt.token) {
				t.Error("the audit record carries the token")
			}
		})
	}
}

func csrPEMFor(t testing.TB, key *ecdsa.PrivateKey) (*ecdsa.PrivateKey, string) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func readAll(t *testing.T, res *http.Response) []byte {
	t.Helper()
	defer res.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(res.Body); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestEnrollErrorsMapToStatusesByReason(t *testing.T) {
	tests := []struct {
		reason string
		status int
		want   Reason
	}{
		{enroll.ReasonTokenMalformed, 401, ReasonTokenMalformed},
		{enroll.ReasonTokenExpired, 401, ReasonTokenExpired},
		{enroll.ReasonTokenNotYetValid, 401, ReasonTokenNotYetValid},
		{enroll.ReasonTokenBadSignature, 401, ReasonTokenBadSignature},
		{enroll.ReasonTokenUnknownIssuer, 401, ReasonTokenUnknownIssuer},
		{enroll.ReasonTokenWrongAudience, 401, ReasonTokenWrongAudience},
		{enroll.ReasonTokenReplayed, 401, ReasonTokenReplayed},
		{enroll.ReasonTokenIssuerUnavailable, 503, ReasonTokenIssuerUnavailable},
		{enroll.ReasonPolicyDenied, 403, ReasonPolicyDenied},
		{enroll.ReasonCSRMalformed, 400, ReasonCSRMalformed},
		{enroll.ReasonCSRBadSignature, 400, ReasonCSRBadSignature},
		{enroll.ReasonCSRWeakKey, 400, ReasonCSRWeakKey},
		{enroll.ReasonCSRForbiddenExtension, 400, ReasonCSRForbiddenExtension},
		{enroll.ReasonTTLTooLong, 400, ReasonTTLTooLong},
		{enroll.ReasonTTLInvalid, 400, ReasonTTLInvalid},
		{enroll.ReasonStoreUnavailable, 503, ReasonStoreUnavailable},
		{enroll.ReasonInternal, 500, ReasonInternal},
	}
	for _, tt := range tests {
		t.Run(tt.reason+" is "+fmt.Sprint(tt.status), func(t *testing.T) {
			err := fmt.Errorf("wrapped: %w", &enroll.Error{Reason: tt.reason, Detail: "d", Err: store.ErrUnavailable})
			kind, reason, _ := classify(err)
			if status := kind.Status(); status != tt.status || reason != tt.want {
				t.Errorf("classify = %d %s, want %d %s", kind.Status(), reason, tt.status, tt.want)
			}
		})
	}
}

func TestParseCertRequest(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		ttl    time.Duration
		reason Reason
	}{
		{"a csr and a ttl parse", `{"csr":"PEM","ttl":"15m"}`, 15 * time.Minute, ""},
		{"a csr alone means the default ttl", `{"csr":"PEM"}`, 0, ""},
		{"an unknown field is refused", `{"csr":"PEM","admin":true}`, 0, ReasonBadRequest},
		{"a missing csr is refused", `{"ttl":"1m"}`, 0, ReasonBadRequest},
		{"a ttl that is not a duration is refused", `{"csr":"PEM","ttl":"soon"}`, 0, ReasonBadRequest},
		{"a negative ttl is ttl_invalid", `{"csr":"PEM","ttl":"-1m"}`, 0, ReasonTTLInvalid},
		{"a ttl above 720h is ttl_too_long", `{"csr":"PEM","ttl":"721h"}`, 0, ReasonTTLTooLong},
		{"trailing data is refused", `{"csr":"PEM"} {}`, 0, ReasonBadRequest},
		{"a JSON array is refused", `["PEM"]`, 0, ReasonBadRequest},
		{"a csr of the wrong type is refused", `{"csr":42}`, 0, ReasonBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, ttl, err := ParseCertRequest([]byte(tt.body))
			if tt.reason == "" {
				if err != nil || string(csr) != "PEM" || ttl != tt.ttl {
					t.Fatalf("got %q %v %v", csr, ttl, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Reason != tt.reason || e.Kind != KindInput {
				t.Fatalf("err = %v, want %s", err, tt.reason)
			}
		})
	}
}

// FuzzParseCertRequest: any body yields a request or a 400 *Error, never a
// panic, and an accepted ttl is within bounds.
func FuzzParseCertRequest(f *testing.F) {
	for _, s := range []string{`{"csr":"PEM","ttl":"15m"}`, `{"csr":""}`, `{}`, `null`, `{"csr":"x","ttl":"9999999999h"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		csr, ttl, err := ParseCertRequest(body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindInput {
				t.Fatalf("error is not a 400 problem: %v", err)
			}
			return
		}
		if len(bytes.TrimSpace(csr)) == 0 || ttl < 0 || ttl > maxRequestTTL {
			t.Fatalf("accepted csr %q ttl %v", csr, ttl)
		}
	})
}
