package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/authz"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/revoke"
)

const testAuthzPolicy = `trust_domain: example.org
services:
  payments:
    identity: spiffe://example.org/prod/payments
    mode: enforce
    endpoints:
      - name: refunds-write
        methods: [POST, PUT, PATCH, DELETE]
        paths: [/v1/refunds, /v1/refunds/*]
        allow: [spiffe://example.org/prod/orders]
      - name: refunds-read
        methods: [GET, HEAD]
        paths: [/v1/refunds/*]
        allow: [spiffe://example.org/prod/*]
  ledger:
    identity: spiffe://example.org/prod/ledger
    mode: observe
    endpoints:
      - name: entries
        methods: [POST]
        paths: [/v1/entries]
        allow: [spiffe://example.org/prod/payments]
`

const (
	paymentsID  = "spiffe://example.org/prod/payments"
	ordersID    = "spiffe://example.org/prod/orders"
	reportingID = "spiffe://example.org/prod/reporting"
	ledgerID    = "spiffe://example.org/prod/ledger"
)

func init() {
	openapi3filter.RegisterBodyDecoder("application/jose", openapi3filter.PlainBodyDecoder)
}

// staticAuthz is an AuthzPolicySource with a policy a test may swap.
type staticAuthz struct{ p atomic.Pointer[authz.Policy] }

func (s *staticAuthz) Load() *authz.Policy { return s.p.Load() }

func fixtureAuthzPolicy(t testing.TB) *staticAuthz {
	t.Helper()
	p, err := authz.ParsePolicy([]byte(testAuthzPolicy))
	if err != nil {
		t.Fatal(err)
	}
	s := &staticAuthz{}
	s.p.Store(p)
	return s
}

// authzServer is a real API listener on Postgres with the authorization
// routes, the policy signer on the given key store, and workload
// certificates for the services of testAuthzPolicy.
type authzServer struct {
	*operatorServer
	pol                                 *staticAuthz
	payments, orders, reporting, ledger tls.Certificate
	unlisted                            tls.Certificate
}

func newAuthzServer(t *testing.T, keys hsm.KeyStore) *authzServer {
	t.Helper()
	as := &authzServer{pol: fixtureAuthzPolicy(t)}
	as.operatorServer = newOperatorServerWith(t, keys, func(o *operatorServer, d *Deps, _ *revoke.Revoker) {
		signer, err := NewAuthzSigner(AuthzSignerConfig{Keys: keys, Issuer: o.iss, TrustDomain: "example.org", Clock: o.clk, Log: d.Log})
		if err != nil {
			t.Fatal(err)
		}
		d.Authz = AuthzDeps{Policy: as.pol, Store: o.st, Signer: signer}
	})
	_, as.payments = as.leaf(paymentsID, time.Hour)
	_, as.orders = as.leaf(ordersID, time.Hour)
	_, as.reporting = as.leaf(reportingID, time.Hour)
	_, as.ledger = as.leaf(ledgerID, time.Hour)
	_, as.unlisted = as.leaf("spiffe://example.org/prod/unlisted", time.Hour)
	return as
}

func (as *authzServer) admin(sub string) creds { return creds{bearer: as.token(sub, "pki-admins")} }

// decide asks POST /v1/authz/decide as cert.
func (as *authzServer) decide(t *testing.T, cert tls.Certificate, source, method, path string) authz.Decision {
	t.Helper()
	body, _ := json.Marshal(AuthzDecideRequest{Source: source, Method: method, Path: path})
	res, raw := as.call(creds{cert: &cert}, http.MethodPost, "/v1/authz/decide", string(body), "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("decide %s %s from %q = %d %s", method, path, source, res.StatusCode, raw)
	}
	d := decode[authz.Decision](t, raw)
	d.Allowed = d.Decision != "deny" // not on the wire (json:"-")
	return d
}

// verifyPolicyJWS checks the JWS as a service would: x5c chains to the
// CA's roots, the leaf is spiffe://example.org/ca/authz-policy, the ES256
// signature verifies with it. It returns the payload.
func verifyPolicyJWS(t *testing.T, jws string, roots *x509.CertPool, now time.Time) []byte {
	t.Helper()
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", jws)
	}
	hdrRaw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Alg string   `json:"alg"`
		Typ string   `json:"typ"`
		X5C []string `json:"x5c"`
	}
	if err := json.Unmarshal(hdrRaw, &hdr); err != nil {
		t.Fatal(err)
	}
	if (hdr.Alg != "ES256" && hdr.Alg != "ES384" && hdr.Alg != "RS256") || hdr.Typ != "authz-policy+jwt" || len(hdr.X5C) < 2 {
		t.Fatalf("header = %s", hdrRaw)
	}
	var certs []*x509.Certificate
	for _, b := range hdr.X5C {
		der, err := base64.StdEncoding.DecodeString(b)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("the x5c leaf does not chain to the CA's roots: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/ca/authz-policy" {
		t.Fatalf("x5c leaf URIs = %v", leaf.URIs)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	input := []byte(parts[0] + "." + parts[1])
	switch pub := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		var digest []byte
		size := 32
		if hdr.Alg == "ES384" && pub.Curve.Params().BitSize == 384 {
			d := sha512.Sum384(input)
			digest, size = d[:], 48
		} else if hdr.Alg == "ES256" && pub.Curve.Params().BitSize == 256 {
			d := sha256.Sum256(input)
			digest = d[:]
		} else {
			t.Fatalf("alg %s with a P-%d key", hdr.Alg, pub.Curve.Params().BitSize)
		}
		if len(sig) != 2*size || !ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])) {
			t.Fatal("the JWS signature does not verify with the x5c leaf")
		}
	case *rsa.PublicKey:
		d := sha256.Sum256(input)
		if hdr.Alg != "RS256" || rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) != nil {
			t.Fatalf("the %s JWS signature does not verify with the x5c RSA leaf", hdr.Alg)
		}
	default:
		t.Fatalf("x5c leaf key %T", pub)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return payload
}

func TestTheServedAuthzPolicyIsSignedAndCarriesOnlyTheCallersPart(t *testing.T) {
	as := newAuthzServer(t, testkit.SoftHSMKeyStore(t))
	res, raw := as.call(creds{cert: &as.payments}, http.MethodGet, "/v1/authz/policy", "", "")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/jose" || res.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("GET /v1/authz/policy = %d %v %s", res.StatusCode, res.Header, raw)
	}
	payload := verifyPolicyJWS(t, string(raw), as.roots, as.clk.Now())
	sum := sha256.Sum256(payload)
	if etag := res.Header.Get("ETag"); etag != `"`+hex.EncodeToString(sum[:])+`"` {
		t.Errorf("ETag %s is not the SHA-256 of the payload", etag)
	}
	p := decode[AuthzPolicyPayload](t, payload)
	full := as.pol.Load()
	if p.Service != "payments" || p.Identity != paymentsID || p.Version != full.Version() || p.RefreshHintSeconds != 30 || len(p.Overrides) != 0 {
		t.Errorf("payload = %+v", p)
	}
	part, err := authz.ParsePolicy([]byte(p.Policy))
	if err != nil {
		t.Fatalf("the served policy does not parse: %v", err)
	}
	if got := part.Services(); len(got) != 1 || got[0] != "payments" || part.TrustDomain() != "example.org" {
		t.Errorf("the served policy has services %v; want only the caller's", got)
	}
	if strings.Contains(p.Policy, "ledger") {
		t.Errorf("the payments policy mentions the ledger service:\n%s", p.Policy)
	}

	// pkg/authz's verifier (what services run) accepts it, against the
	// CA's own anchors as a trust bundle.
	anchors, err := as.iss.TrustAnchors(as.ctx)
	if err != nil {
		t.Fatal(err)
	}
	tb := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("example.org"), anchors)
	sp, vp, err := authz.VerifyServedPolicy(raw, tb, "example.org", as.clk.Now())
	if err != nil {
		t.Fatalf("authz.VerifyServedPolicy refuses the served policy: %v", err)
	}
	if sp.Service != "payments" || vp.Version() != full.Version() {
		t.Errorf("verified %+v, version %s", sp, vp.Version())
	}
	if _, _, err := authz.VerifyServedPolicy(raw, tb, "other.org", as.clk.Now()); err == nil {
		t.Error("the served policy verified for another trust domain")
	}

	// The same content answers 304 to its ETag, a changed one does not.
	res2, _ := as.callWith(as.payments, "/v1/authz/policy", map[string]string{"If-None-Match": res.Header.Get("ETag")})
	if res2.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with the current ETag = %d, want 304", res2.StatusCode)
	}
	res3, _ := as.callWith(as.ledger, "/v1/authz/policy", map[string]string{"If-None-Match": res.Header.Get("ETag")})
	if res3.StatusCode != http.StatusOK {
		t.Errorf("another service's fetch with payments' ETag = %d, want 200", res3.StatusCode)
	}

	// Serving new content to a service is audited once, not every refresh.
	entries, err := as.st.AuditEntries(as.ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]int{}
	for _, e := range entries {
		if e.Action == ActionAuthzPolicyFetch {
			served[e.Target]++
		}
	}
	if served["payments"] != 1 || served["ledger"] != 1 {
		t.Errorf("authz_policy_fetch entries by service = %v, want one each", served)
	}

	// Who may not fetch.
	res, raw = as.call(creds{cert: &as.unlisted}, http.MethodGet, "/v1/authz/policy", "", "")
	wantProblem(t, "an identity that is no service", res, raw, http.StatusNotFound, ReasonNotFound)
	res, raw = as.call(creds{}, http.MethodGet, "/v1/authz/policy", "", "")
	wantProblem(t, "no client certificate", res, raw, http.StatusUnauthorized, ReasonUnauthorized)
}

// callWith is a GET with extra headers (not part of the OpenAPI exchange
// check for 304, which carries no body).
func (as *authzServer) callWith(cert tls.Certificate, path string, header map[string]string) (*http.Response, []byte) {
	as.extraHeader = header
	defer func() { as.extraHeader = nil }()
	return as.call(creds{cert: &cert}, http.MethodGet, path, "", "")
}

func TestTheCentralDecisionAgreesWithThePolicy(t *testing.T) {
	as := newAuthzServer(t, softwareKeys(t))
	pol := as.pol.Load()
	cases := []struct {
		name         string
		source       string
		method, path string
		reason       string
	}{
		{"orders may write refunds", ordersID, "POST", "/v1/refunds/1", authz.ReasonAllowed},
		{"reporting may read refunds", reportingID, "GET", "/v1/refunds/1", authz.ReasonAllowed},
		{"reporting may not write refunds", reportingID, "POST", "/v1/refunds/1", authz.ReasonNoWritePermission},
		{"no endpoint matches", ordersID, "GET", "/v1/other", authz.ReasonNoRule},
		{"another trust domain is not allowed", "spiffe://evil.org/prod/orders", "POST", "/v1/refunds", authz.ReasonNotAllowed},
		{"no verified identity", "", "GET", "/v1/refunds/1", authz.ReasonIdentityUnverified},
		{"a path that does not normalise", ordersID, "POST", "/v1/refunds/../admin", authz.ReasonPathInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := as.decide(t, as.payments, tc.source, tc.method, tc.path)
			want := pol.Decide(authz.Request{Source: tc.source, Service: "payments", Method: tc.method, Path: tc.path, Time: as.clk.Now()}, nil)
			if got != want {
				t.Errorf("decide = %+v, Policy.Decide = %+v", got, want)
			}
			if got.Reason != tc.reason {
				t.Errorf("reason = %s, want %s", got.Reason, tc.reason)
			}
		})
	}
	// Each decision is audited with the caller as actor.
	entries, err := as.st.AuditEntries(as.ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Action == ActionAuthzDecide && e.Actor == paymentsID && e.Target == "payments" {
			n++
		}
	}
	if n != len(cases) {
		t.Errorf("%d authz_decide entries, want %d", n, len(cases))
	}
	res, raw := as.call(creds{cert: &as.payments}, http.MethodPost, "/v1/authz/decide", `{"source":"x","method":"GET","path":"/","extra":1}`, "")
	wantProblem(t, "an unknown field", res, raw, http.StatusBadRequest, ReasonBadRequest)
	res, raw = as.call(creds{cert: &as.payments}, http.MethodPost, "/v1/authz/decide", `{"source":"`+strings.Repeat("a", 5000)+`","method":"GET","path":"/"}`, "")
	wantProblem(t, "a body over 4 KiB", res, raw, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge)
}

func TestAnOverrideNeedsASecondAdminAndEndsWithItsTTL(t *testing.T) {
	as := newAuthzServer(t, softwareKeys(t))
	ada, bob := as.admin("ada"), as.admin("bob")
	body := fmt.Sprintf(`{"source":%q,"service":"payments","endpoint":"refunds-write","ttl":"5m","reason":"incident 42"}`, reportingID)
	res, raw := as.call(ada, http.MethodPost, "/v1/authz/overrides", body, "")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("request = %d %s", res.StatusCode, raw)
	}
	ov := decode[OverrideView](t, raw)
	if ov.State != "pending" || ov.RequestedBy != "corp-idp:ada" || !strings.HasPrefix(ov.ID, "ovr-") {
		t.Fatalf("requested override = %+v", ov)
	}
	if d := as.decide(t, as.payments, reportingID, "POST", "/v1/refunds/1"); d.Allowed || d.Reason != authz.ReasonNoWritePermission {
		t.Errorf("a pending override changed the decision: %+v", d)
	}
	res, raw = as.call(ada, http.MethodPost, "/v1/authz/overrides/"+ov.ID+"/approve", "", "")
	wantProblem(t, "the requester approving their own override", res, raw, http.StatusForbidden, ReasonForbidden)

	res, raw = as.call(bob, http.MethodPost, "/v1/authz/overrides/"+ov.ID+"/approve", "", "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("approve = %d %s", res.StatusCode, raw)
	}
	ov = decode[OverrideView](t, raw)
	if ov.State != "active" || ov.ApprovedBy != "corp-idp:bob" || ov.Until == nil || !ov.Until.Equal(as.clk.Now().Add(5*time.Minute)) {
		t.Fatalf("approved override = %+v", ov)
	}
	d := as.decide(t, as.payments, reportingID, "POST", "/v1/refunds/1")
	if !d.Allowed || d.Reason != authz.ReasonOverride || d.OverrideID != ov.ID {
		t.Errorf("with the override active: %+v", d)
	}
	// The override is part of the policy payments fetches, not ledger's.
	_, raw = as.call(creds{cert: &as.payments}, http.MethodGet, "/v1/authz/policy", "", "")
	p := decode[AuthzPolicyPayload](t, verifyPolicyJWS(t, string(raw), as.roots, as.clk.Now()))
	if len(p.Overrides) != 1 || p.Overrides[0].ID != ov.ID || p.Overrides[0].Source != reportingID || p.Overrides[0].Endpoint != "refunds-write" {
		t.Errorf("served overrides = %+v", p.Overrides)
	}
	_, raw = as.call(creds{cert: &as.ledger}, http.MethodGet, "/v1/authz/policy", "", "")
	if p := decode[AuthzPolicyPayload](t, verifyPolicyJWS(t, string(raw), as.roots, as.clk.Now())); len(p.Overrides) != 0 {
		t.Errorf("ledger was served payments' override: %+v", p.Overrides)
	}
	res, raw = as.call(bob, http.MethodPost, "/v1/authz/overrides/"+ov.ID+"/approve", "", "")
	wantProblem(t, "approving twice", res, raw, http.StatusConflict, ReasonOverrideNotPending)

	// The injected clock passes the TTL: the override no longer applies.
	as.clk.Advance(5*time.Minute + time.Second)
	if d := as.decide(t, as.payments, reportingID, "POST", "/v1/refunds/1"); d.Allowed || d.Reason != authz.ReasonNoWritePermission {
		t.Errorf("after expiry: %+v", d)
	}
	res, raw = as.call(ada, http.MethodPost, "/v1/authz/overrides/"+ov.ID+"/end", "", "")
	wantProblem(t, "ending an expired override", res, raw, http.StatusConflict, ReasonOverrideNotPending)
	res, raw = as.call(creds{bearer: as.token("aud", "pki-auditors")}, http.MethodGet, "/v1/authz/overrides", "", "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("list = %d %s", res.StatusCode, raw)
	}
	if l := decode[OverrideList](t, raw); len(l.Items) != 1 || l.Items[0].State != "expired" {
		t.Errorf("list = %+v", l)
	}

	// A second override ended early stops applying at once.
	res, raw = as.call(ada, http.MethodPost, "/v1/authz/overrides", body, "")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("second request = %d %s", res.StatusCode, raw)
	}
	ov2 := decode[OverrideView](t, raw)
	if res, raw := as.call(bob, http.MethodPost, "/v1/authz/overrides/"+ov2.ID+"/approve", "", ""); res.StatusCode != http.StatusOK {
		t.Fatalf("second approve = %d %s", res.StatusCode, raw)
	}
	res, raw = as.call(ada, http.MethodPost, "/v1/authz/overrides/"+ov2.ID+"/end", "", "")
	if res.StatusCode != http.StatusOK || decode[OverrideView](t, raw).State != "ended" {
		t.Fatalf("end = %d %s", res.StatusCode, raw)
	}
	if d := as.decide(t, as.payments, reportingID, "POST", "/v1/refunds/1"); d.Allowed {
		t.Errorf("after end: %+v", d)
	}

	// Requests are validated; roles are enforced.
	for name, b := range map[string]string{
		"an unknown endpoint": fmt.Sprintf(`{"source":%q,"service":"payments","endpoint":"nope","ttl":"5m","reason":"x"}`, reportingID),
		"an unknown service":  fmt.Sprintf(`{"source":%q,"service":"nope","endpoint":"refunds-write","ttl":"5m","reason":"x"}`, reportingID),
		"a ttl over 24h":      fmt.Sprintf(`{"source":%q,"service":"payments","endpoint":"refunds-write","ttl":"25h","reason":"x"}`, reportingID),
		"no reason":           fmt.Sprintf(`{"source":%q,"service":"payments","endpoint":"refunds-write","ttl":"5m","reason":""}`, reportingID),
	} {
		res, raw := as.call(ada, http.MethodPost, "/v1/authz/overrides", b, "")
		wantProblem(t, name, res, raw, http.StatusBadRequest, ReasonOverrideInvalid)
	}
	res, raw = as.call(creds{bearer: as.token("aud", "pki-auditors")}, http.MethodPost, "/v1/authz/overrides", body, "")
	wantProblem(t, "an auditor requesting", res, raw, http.StatusForbidden, ReasonForbidden)
	res, raw = as.call(bob, http.MethodPost, "/v1/authz/overrides/ovr-missing/approve", "", "")
	wantProblem(t, "an unknown override", res, raw, http.StatusNotFound, ReasonNotFound)

	// Every step is in the audit log.
	entries, err := as.st.AuditEntries(as.ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range entries {
		count[e.Action]++
	}
	if count[ActionAuthzOverrideRequest] != 2 || count[ActionAuthzOverrideApprove] != 2 || count[ActionAuthzOverrideEnd] != 1 {
		t.Errorf("audited override steps = %v", count)
	}
}

func TestReportsAreAggregatedPerMinuteForTheReportersOwnService(t *testing.T) {
	as := newAuthzServer(t, softwareKeys(t))
	end := as.clk.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	report := func(service string, n int, count int64) string {
		rows := make([]string, n)
		for i := range rows {
			rows[i] = fmt.Sprintf(`{"source":%q,"endpoint":"refunds-write","decision":"would_deny","reason":"policy_no_write_permission","count":%d}`, reportingID, count)
		}
		return fmt.Sprintf(`{"service":%q,"policy_version":"v","window_start":%q,"window_end":%q,"counts":[%s]}`,
			service, end.Add(-30*time.Second).Format(time.RFC3339), end.Format(time.RFC3339), strings.Join(rows, ","))
	}
	for range 2 {
		res, raw := as.call(creds{cert: &as.payments}, http.MethodPost, "/v1/authz/reports", report("payments", 1, 12), "")
		if res.StatusCode != http.StatusAccepted || string(raw) != "{\"accepted\":1}\n" {
			t.Fatalf("report = %d %s", res.StatusCode, raw)
		}
	}
	got, err := as.st.ListAuthzReportCounts(as.ctx, "payments", end.Add(-time.Hour), end.Add(time.Hour), 0)
	if err != nil || len(got) != 1 || got[0].Count != 24 || !got[0].Minute.Equal(end.Truncate(time.Minute)) || got[0].Source != reportingID {
		t.Errorf("aggregates = %+v, %v; want one row of 24 in the window's minute", got, err)
	}
	res, raw := as.call(creds{cert: &as.ledger}, http.MethodPost, "/v1/authz/reports", report("payments", 1, 5), "")
	wantProblem(t, "a service reporting for another", res, raw, http.StatusForbidden, ReasonForbidden)
	res, raw = as.call(creds{cert: &as.payments}, http.MethodPost, "/v1/authz/reports", report("payments", 1, -1), "")
	wantProblem(t, "a negative count", res, raw, http.StatusBadRequest, ReasonBadRequest)
	end = end.Add(48 * time.Hour)
	res, raw = as.call(creds{cert: &as.payments}, http.MethodPost, "/v1/authz/reports", report("payments", 1, 1), "")
	wantProblem(t, "a window two days ahead", res, raw, http.StatusBadRequest, ReasonBadRequest)
	end = end.Add(-48 * time.Hour)
	res, raw = as.call(creds{cert: &as.payments}, http.MethodPost, "/v1/authz/reports", report("payments", 500, 1), "")
	wantProblem(t, "a body over 64 KiB", res, raw, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge)
	if got, _ := as.st.ListAuthzReportCounts(as.ctx, "payments", end.Add(-time.Hour), end.Add(time.Hour), 0); len(got) != 1 || got[0].Count != 24 {
		t.Errorf("refused reports changed the aggregates: %+v", got)
	}
}

// The policy signing key follows the configured key type (issuer.key_type
// in ca serve): a token without elliptic curves signs the policy with RSA
// (RS256), a P-384 CA with ES384; the fetcher's verification accepts both.
func TestThePolicySigningKeyFollowsTheKeyType(t *testing.T) {
	keys := softwareKeys(t)
	as := newAuthzServer(t, keys)
	for _, c := range []struct {
		kt  hsm.KeyType
		alg string
	}{{hsm.RSA3072, "RS256"}, {hsm.ECDSAP384, "ES384"}, {"", "ES256"}} {
		signer, err := NewAuthzSigner(AuthzSignerConfig{Keys: keys, Issuer: as.iss, TrustDomain: "example.org", KeyType: c.kt, Clock: as.clk})
		if err != nil {
			t.Fatal(err)
		}
		jws, err := signer.SignAuthzPolicy(as.ctx, []byte(`{"service":"payments"}`))
		if err != nil {
			t.Fatalf("%s: %v", c.kt, err)
		}
		hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(jws, ".")[0])
		if !strings.Contains(string(hdr), `"alg":"`+c.alg+`"`) {
			t.Errorf("%s: header %s, want alg %s", c.kt, hdr, c.alg)
		}
		verifyPolicyJWS(t, jws, as.roots, as.clk.Now())
		if err := signer.Close(as.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewAuthzSigner(AuthzSignerConfig{Keys: keys, Issuer: as.iss, TrustDomain: "example.org", KeyType: "dsa-1024"}); !errors.Is(err, hsm.ErrBadKeyType) {
		t.Errorf("an unknown key type: %v", err)
	}
}

func TestThePolicySigningCertificateIsRenewedBeforeItExpires(t *testing.T) {
	keys := softwareKeys(t)
	as := newAuthzServer(t, keys)
	signer, err := NewAuthzSigner(AuthzSignerConfig{Keys: keys, Issuer: as.iss, TrustDomain: "example.org", Lifetime: 3 * time.Hour, Clock: as.clk})
	if err != nil {
		t.Fatal(err)
	}
	leafOf := func() *x509.Certificate {
		t.Helper()
		jws, err := signer.SignAuthzPolicy(as.ctx, []byte(`{"service":"payments"}`))
		if err != nil {
			t.Fatal(err)
		}
		hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(jws, ".")[0])
		var h struct{ X5C []string }
		_ = json.Unmarshal(hdr, &h)
		der, _ := base64.StdEncoding.DecodeString(h.X5C[0])
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		verifyPolicyJWS(t, jws, as.roots, as.clk.Now())
		return c
	}
	first := leafOf()
	if again := leafOf(); again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("a fresh signing certificate was replaced")
	}
	if _, err := as.st.GetCertificate(as.ctx, serialHex(first)); err != nil {
		t.Errorf("the signing certificate is not recorded: %v", err)
	}
	as.clk.Advance(2*time.Hour + time.Minute) // less than a third of its life left
	second := leafOf()
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 || !second.NotAfter.After(first.NotAfter) {
		t.Errorf("not renewed: %v -> %v", first.NotAfter, second.NotAfter)
	}
	uri := signer.cur.key.URI
	if err := signer.Close(as.ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := keys.Find(as.ctx, uri); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("after Close the signing key is still in the key store: %v", err)
	}
}

// A service that goes back to content it was served before (an override
// ended, a policy reverted) gets it with an issued_at no older than the last
// policy it was served: services refuse an older one (pkg/authz's Fetcher),
// so reusing the first signing's issued_at left them on the newer policy.
func TestPolicyContentServedAgainIsNeverOlderThanTheLastOne(t *testing.T) {
	as := newAuthzServer(t, testkit.SoftHSMKeyStore(t))
	issuedAt := func() time.Time {
		t.Helper()
		res, raw := as.call(creds{cert: &as.payments}, http.MethodGet, "/v1/authz/policy", "", "")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/authz/policy = %d %s", res.StatusCode, raw)
		}
		return decode[AuthzPolicyPayload](t, verifyPolicyJWS(t, string(raw), as.roots, as.clk.Now())).IssuedAt
	}
	original := as.pol.Load()
	first := issuedAt()

	as.clk.Advance(time.Minute)
	changed, err := authz.ParsePolicy([]byte(strings.Replace(testAuthzPolicy, "mode: observe", "mode: enforce", 1)))
	if err != nil || changed.Version() == original.Version() {
		t.Fatalf("a changed policy: %v (version unchanged: %t)", err, err == nil)
	}
	as.pol.p.Store(changed)
	second := issuedAt()

	as.clk.Advance(time.Minute)
	as.pol.p.Store(original)
	third := issuedAt()
	if !second.After(first) || third.Before(second) {
		t.Errorf("issued_at %v, then %v for new content, then %v for the first content again; want never older than the last served", first, second, third)
	}
}
