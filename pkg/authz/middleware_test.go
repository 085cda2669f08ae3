package authz

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// mesh is a payments service behind pkg/mtls and the authz middleware, and
// clients for the other services, all with certificates of one test CA.
type mesh struct {
	ca      *testca.CA
	srv     *httptest.Server
	logs    *syncBuffer
	counts  *Counts
	source  *swappable
	clk     *clock.Fake
	clients map[string]*http.Client
	reached int
	mu      sync.Mutex
}

func newMesh(t *testing.T, policy string, overrides []Override) *mesh {
	t.Helper()
	m := &mesh{logs: &syncBuffer{}, counts: NewCounts(0), source: &swappable{}, clk: clock.NewFake(noon), clients: map[string]*http.Client{}}
	ca, err := testca.New(testca.Options{Now: noon})
	if err != nil {
		t.Fatal(err)
	}
	m.ca = ca
	m.source.set(mustParse(t, policy), overrides)
	bundle := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("example.org"), []*x509.Certificate{ca.Root})
	serverCred, err := ca.Issue(testca.Leaf{SPIFFEID: payments, DNSNames: []string{"payments.test"}})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := mtls.ServerTLSConfig(mtls.Config{Bundles: bundle, Identity: mtls.StaticIdentity{Cert: serverCred.TLSCertificate()}, Authorize: mtls.AuthorizeAny(), Clock: m.clk})
	if err != nil {
		t.Fatal(err)
	}
	mw, err := Middleware(MiddlewareConfig{
		Service: "payments", Policy: m.source, PeerID: MTLSPeer, Clock: m.clk, Counts: m.counts,
		Log: slog.New(slog.NewJSONHandler(m.logs, nil)), AllowLogEvery: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.srv = httptest.NewUnstartedServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.reached++
		m.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})))
	// httptest would put its own certificate in Certificates, which wins over
	// GetCertificate without SNI.
	tlsCfg.Certificates = []tls.Certificate{*serverCred.TLSCertificate()}
	m.srv.TLS = tlsCfg
	m.srv.StartTLS()
	t.Cleanup(m.srv.Close)
	for _, id := range []string{orders, reporting} {
		cred, err := ca.Issue(testca.Leaf{SPIFFEID: id})
		if err != nil {
			t.Fatal(err)
		}
		ccfg, err := mtls.ClientTLSConfig(mtls.Config{Bundles: bundle, Identity: mtls.StaticIdentity{Cert: cred.TLSCertificate()}, Authorize: mtls.AuthorizeID(spiffeid.RequireFromString(payments)), Clock: m.clk})
		if err != nil {
			t.Fatal(err)
		}
		m.clients[id] = &http.Client{Transport: &http.Transport{TLSClientConfig: ccfg}}
		t.Cleanup(m.clients[id].CloseIdleConnections)
	}
	return m
}

func (m *mesh) call(t *testing.T, from, method, path string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, m.srv.URL+path, strings.NewReader(`{"card":"4111111111111111"}`))
	req.Header.Set("Authorization", "Bearer secret-token")
	res, err := m.clients[from].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

func TestMiddlewareEnforceRefusesWithProblemAndLogs(t *testing.T) {
	m := newMesh(t, examplePolicy, nil)
	if code, body, _ := m.call(t, orders, "POST", "/v1/refunds/1"); code != 200 || body != "ok" {
		t.Fatalf("orders POST: %d %s", code, body)
	}
	code, body, hdr := m.call(t, reporting, "POST", "/v1/refunds/1?token=abc")
	if code != http.StatusForbidden || hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("reporting POST: %d %s %s", code, hdr.Get("Content-Type"), body)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	if p["reason"] != ReasonNoWritePermission || p["status"] != float64(403) || p["endpoint"] != "refunds-write" {
		t.Errorf("problem = %v", p)
	}
	if m.reached != 1 {
		t.Errorf("handler reached %d times, want 1 (the denied call must not reach it)", m.reached)
	}
	var deny map[string]any
	for _, l := range m.logs.lines(t) {
		if l["decision"] == "deny" {
			deny = l
		}
	}
	if deny == nil {
		t.Fatalf("no deny logged: %v", m.logs.lines(t))
	}
	want := map[string]any{"source_identity": reporting, "destination_identity": payments, "service": "payments", "endpoint": "refunds-write",
		"method": "POST", "path": "/v1/refunds/1", "decision": "deny", "reason": ReasonNoWritePermission, "mode": "enforce", "policy_version": mustParse(t, examplePolicy).Version()}
	for k, v := range want {
		if deny[k] != v {
			t.Errorf("log %s = %v, want %v", k, deny[k], v)
		}
	}
	m.logs.mu.Lock()
	all := m.logs.b.String()
	m.logs.mu.Unlock()
	for _, secret := range []string{"secret-token", "4111111111111111", "token=abc"} {
		if strings.Contains(all, secret) {
			t.Errorf("logs contain %q:\n%s", secret, all)
		}
	}
}

func TestMiddlewareObserveLetsDenialsThroughAsWouldDeny(t *testing.T) {
	m := newMesh(t, strings.Replace(examplePolicy, "mode: enforce", "mode: observe", 1), nil)
	if code, body, _ := m.call(t, reporting, "POST", "/v1/refunds/1"); code != 200 || body != "ok" {
		t.Fatalf("observe mode: %d %s", code, body)
	}
	found := false
	for _, l := range m.logs.lines(t) {
		if l["decision"] == "would_deny" && l["reason"] == ReasonNoWritePermission && l["mode"] == "observe" {
			found = true
		}
	}
	if !found {
		t.Errorf("no would_deny logged: %v", m.logs.lines(t))
	}
	rows, _ := m.counts.Take()
	var got []CountRow
	for _, r := range rows {
		got = append(got, r...)
	}
	if len(got) != 1 || got[0] != (CountRow{Source: reporting, Endpoint: "refunds-write", Decision: "would_deny", Reason: ReasonNoWritePermission, Count: 1}) {
		t.Errorf("counts = %+v", got)
	}
}

func TestMiddlewareOverrideAllowsUntilItExpires(t *testing.T) {
	ov := []Override{{ID: "ovr-9", Source: reporting, Service: "payments", Endpoint: "refunds-write", Until: noon.Add(time.Hour)}}
	m := newMesh(t, examplePolicy, ov)
	if code, body, _ := m.call(t, reporting, "POST", "/v1/refunds/1"); code != 200 {
		t.Fatalf("with override: %d %s", code, body)
	}
	logged := false
	for _, l := range m.logs.lines(t) {
		if l["override"] == "ovr-9" && l["reason"] == ReasonOverride {
			logged = true
		}
	}
	if !logged {
		t.Errorf("override use not logged: %v", m.logs.lines(t))
	}
	m.clk.Advance(time.Hour)
	if code, _, _ := m.call(t, reporting, "POST", "/v1/refunds/1"); code != http.StatusForbidden {
		t.Errorf("after expiry: %d, want 403", code)
	}
}

func TestMiddlewareWithoutVerifiedPeerIsUnverified(t *testing.T) {
	p := mustParse(t, examplePolicy)
	mw, err := Middleware(MiddlewareConfig{Service: "payments", Policy: StaticPolicy{Policy: p}, Clock: clock.NewFake(noon)})
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("handler reached") }))
	for _, st := range []*tls.ConnectionState{nil, {HandshakeComplete: true}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/refunds/1", nil)
		req.TLS = st
		h.ServeHTTP(rec, req)
		if rec.Code != 403 || !strings.Contains(rec.Body.String(), ReasonIdentityUnverified) {
			t.Errorf("%d %s", rec.Code, rec.Body)
		}
	}
	// No policy loaded: everything is refused.
	mw, _ = Middleware(MiddlewareConfig{Service: "payments", Policy: StaticPolicy{}})
	rec := httptest.NewRecorder()
	mw(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), ReasonNoRule) {
		t.Errorf("no policy: %d %s", rec.Code, rec.Body)
	}
}
