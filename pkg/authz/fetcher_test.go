package authz

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// fakeCA is a throwaway CA serving GET /v1/authz/policy and POST
// /v1/authz/reports over mTLS as authz-api.md specifies, signing with a
// certificate for spiffe://example.org/ca/authz-policy.
type fakeCA struct {
	t       *testing.T
	ca      *testca.CA
	bundle  *x509bundle.Bundle
	srv     *httptest.Server
	client  *http.Client
	clk     *clock.Fake
	whole   *Policy
	signer  *testca.Credential
	mu      sync.Mutex
	jws     []byte // what GET answers; nil = 503
	etag    string
	gets    int
	inm     []string
	reports []Report
	callers []string
	status  int // POST reports answer; 0 = 202
}

func newFakeCA(t *testing.T) *fakeCA {
	t.Helper()
	f := &fakeCA{t: t, clk: clock.NewFake(noon), whole: mustParse(t, examplePolicy)}
	ca, err := testca.New(testca.Options{Now: noon})
	if err != nil {
		t.Fatal(err)
	}
	f.ca = ca
	f.bundle = x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("example.org"), []*x509.Certificate{ca.Root})
	f.signer = f.issue("spiffe://example.org/ca/authz-policy")
	serverCred := f.issue("spiffe://example.org/ca/server")
	tlsCfg, err := mtls.ServerTLSConfig(mtls.Config{Bundles: f.bundle, Identity: mtls.StaticIdentity{Cert: serverCred.TLSCertificate()}, Authorize: mtls.AuthorizeAny(), Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg.Certificates = []tls.Certificate{*serverCred.TLSCertificate()}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.TLS = tlsCfg
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	client := f.issue(payments)
	ccfg, err := mtls.ClientTLSConfig(mtls.Config{Bundles: f.bundle, Identity: mtls.StaticIdentity{Cert: client.TLSCertificate()}, Authorize: mtls.AuthorizeAny(), Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	f.client = &http.Client{Transport: &http.Transport{TLSClientConfig: ccfg}}
	t.Cleanup(f.client.CloseIdleConnections)
	return f
}

func (f *fakeCA) issue(id string) *testca.Credential {
	c, err := f.ca.Issue(testca.Leaf{SPIFFEID: id})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fakeCA) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.callers = append(f.callers, MTLSPeer(r))
	switch {
	case r.Method == http.MethodGet && r.URL.Path == PolicyPath:
		f.gets++
		f.inm = append(f.inm, r.Header.Get("If-None-Match"))
		if f.jws == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.Header.Get("If-None-Match") == f.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/jose")
		w.Header().Set("ETag", f.etag)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(f.jws)
	case r.Method == http.MethodPost && r.URL.Path == ReportsPath:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReportBytes))
		if err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		var rep Report
		if err := json.Unmarshal(body, &rep); err != nil || len(rep.Counts) > MaxReportRows {
			http.Error(w, "bad report", http.StatusBadRequest)
			return
		}
		if f.status != 0 {
			http.Error(w, "no", f.status)
			return
		}
		f.reports = append(f.reports, rep)
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]int{"accepted": len(rep.Counts)})
	default:
		http.NotFound(w, r)
	}
}

// sign builds the JWS the CA serves for service, signed by cred.
func (f *fakeCA) sign(cred *testca.Credential, service string, overrides []Override, issuedAt time.Time) ([]byte, []byte) {
	f.t.Helper()
	part, err := f.whole.ForService(service)
	if err != nil {
		f.t.Fatal(err)
	}
	payload, err := json.Marshal(ServedPolicy{Service: service, Identity: f.whole.identityOf(service), Version: f.whole.Version(), Policy: string(part),
		Overrides: overrides, IssuedAt: issuedAt, RefreshHintSeconds: 30})
	if err != nil {
		f.t.Fatal(err)
	}
	x5c := []string{}
	for _, c := range cred.Chain {
		x5c = append(x5c, base64.StdEncoding.EncodeToString(c.Raw))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: cred.Key},
		(&jose.SignerOptions{}).WithType(PolicyJWSType).WithHeader("x5c", x5c))
	if err != nil {
		f.t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		f.t.Fatal(err)
	}
	return []byte(s), payload
}

func (f *fakeCA) publish(jws, payload []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jws, f.etag = jws, PolicyETag(payload)
}

func (f *fakeCA) fetcher(t *testing.T, cache string) *Fetcher {
	t.Helper()
	fe, err := NewFetcher(FetcherConfig{URL: f.srv.URL, Client: f.client, Bundles: f.bundle, TrustDomain: "example.org",
		Service: "payments", Identity: payments, CacheFile: cache, Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	return fe
}

func TestFetcherVerifiesCachesAndRevalidates(t *testing.T) {
	f := newFakeCA(t)
	ov := []Override{{ID: "ovr-3", Source: reporting, Service: "payments", Endpoint: "refunds-write", Until: noon.Add(time.Hour)}}
	f.publish(f.sign(f.signer, "payments", ov, noon))
	cache := filepath.Join(t.TempDir(), "authz-policy.jws")
	fe := f.fetcher(t, cache)
	if p, _ := fe.Current(); p != nil || fe.Health().Loaded {
		t.Fatal("a policy before any fetch")
	}
	if err := fe.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, overrides := fe.Current()
	if p == nil || p.Version() != f.whole.Version() || len(overrides) != 1 {
		t.Fatalf("after fetch: %v %v", p, overrides)
	}
	if got := p.Services(); len(got) != 1 || got[0] != "payments" {
		t.Errorf("services %v", got)
	}
	d := p.Decide(Request{Source: reporting, Service: "payments", Method: "POST", Path: "/v1/refunds/1", Time: noon}, overrides)
	if d.Reason != ReasonOverride || d.OverrideID != "ovr-3" || d.PolicyVersion != f.whole.Version() {
		t.Errorf("decision with the served override: %+v", d)
	}
	h := fe.Health()
	if !h.Loaded || h.PolicyVersion != f.whole.Version() || h.Source != "ca" || h.Service != "payments" || h.Overrides != 1 || h.LastError != "" || !h.LastSuccess.Equal(noon) {
		t.Errorf("health %+v", h)
	}
	st, err := os.Stat(cache)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v %v", st, err)
	}
	// Revalidation: If-None-Match with the ETag, 304, nothing changes.
	if err := fe.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.inm[1] != f.etag {
		t.Errorf("If-None-Match %q, want %q", f.inm[1], f.etag)
	}
	if fe.NextRefresh() != 30*time.Second {
		t.Errorf("NextRefresh %s", fe.NextRefresh())
	}
	if f.callers[0] != payments {
		t.Errorf("the CA saw caller %q", f.callers[0])
	}

	// CA outage: the last good policy stays, health says why.
	f.publish(nil, nil)
	f.mu.Lock()
	f.etag = "" // so the fetcher's If-None-Match does not match
	f.mu.Unlock()
	if err := fe.Refresh(context.Background()); err == nil {
		t.Fatal("refresh against a down CA succeeded")
	}
	if p2, _ := fe.Current(); p2 != p || fe.Health().LastError == "" || fe.NextRefresh() != minRefresh {
		t.Errorf("after outage: policy replaced or health %+v", fe.Health())
	}
	// Restart during the outage, hours later (beyond nothing: the chain is
	// checked at issued_at): the cache is loaded.
	f.clk.Advance(48 * time.Hour)
	fe2 := f.fetcher(t, cache)
	p3, ov3 := fe2.Current()
	if p3 == nil || p3.Version() != f.whole.Version() || len(ov3) != 1 || fe2.Health().Source != "cache" {
		t.Fatalf("restart from cache: %v %+v", p3, fe2.Health())
	}
}

func TestFetcherRefusesWhatDoesNotVerify(t *testing.T) {
	f := newFakeCA(t)
	good, goodPayload := f.sign(f.signer, "payments", nil, noon)
	other, err := testca.New(testca.Options{Now: noon, Name: "rogue"})
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := other.Issue(testca.Leaf{SPIFFEID: "spiffe://example.org/ca/authz-policy"})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(good), ".")
	evilPayload, _ := json.Marshal(map[string]any{"service": "payments"})
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(evilPayload) + "." + parts[2]
	wrongSigner, _ := f.sign(f.issue(payments), "payments", nil, noon)
	rogueSigned, _ := f.sign(rogue, "payments", nil, noon)
	otherService, _ := f.sign(f.signer, "reporting", nil, noon)
	cases := []struct {
		name string
		jws  []byte
		sig  bool
	}{
		{"a tampered payload", []byte(tampered), true},
		{"a signer that is not spiffe://example.org/ca/authz-policy", wrongSigner, true},
		{"a signer from another CA", rogueSigned, true},
		{"garbage", []byte("not.a.jws"), true},
		{"the policy of another service", otherService, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.publish(c.jws, []byte(c.name))
			fe := f.fetcher(t, "")
			err := fe.Refresh(context.Background())
			if err == nil {
				t.Fatal("accepted")
			}
			if c.sig != errors.Is(err, ErrPolicySignature) {
				t.Errorf("err = %v", err)
			}
			if p, _ := fe.Current(); p != nil {
				t.Error("installed a policy that does not verify")
			}
		})
	}
	// An older issued_at than the enforced one is not installed (no rollback).
	f.publish(good, goodPayload)
	fe := f.fetcher(t, "")
	if err := fe.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.publish(f.sign(f.signer, "payments", []Override{{ID: "x", Source: reporting, Service: "payments", Endpoint: "refunds-write", Until: noon.Add(time.Hour)}}, noon.Add(-time.Minute)))
	if err := fe.Refresh(context.Background()); err == nil {
		t.Error("an older policy was installed")
	}
	if _, ov := fe.Current(); len(ov) != 0 {
		t.Error("the older policy's overrides are in force")
	}
	// A signer certificate expired now is refused on fetch.
	f.publish(f.sign(f.signer, "payments", nil, noon))
	f.clk.Advance(2 * 365 * 24 * time.Hour)
	fe = f.fetcher(t, "")
	if err := fe.Refresh(context.Background()); !errors.Is(err, ErrPolicySignature) {
		t.Errorf("expired signer: %v", err)
	}
}

func TestReporterPostsBoundedReportsAndKeepsUndelivered(t *testing.T) {
	f := newFakeCA(t)
	counts := NewCounts(5000)
	rep, err := NewReporter(ReporterConfig{URL: f.srv.URL, Client: f.client, Service: "payments", Counts: counts, Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	d := Decision{Decision: DecisionWouldDeny, Reason: ReasonNoWritePermission, Endpoint: "refunds-write", Mode: ModeObserve, PolicyVersion: "v1"}
	for range 12 {
		counts.Add(reporting, d)
	}
	f.clk.Advance(30 * time.Second)
	f.status = http.StatusServiceUnavailable
	if err := rep.Flush(context.Background()); err == nil {
		t.Fatal("flush against a failing CA succeeded")
	}
	f.status = 0
	f.clk.Advance(30 * time.Second)
	counts.Add(reporting, d)
	if err := rep.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.reports) != 1 {
		t.Fatalf("reports %d", len(f.reports))
	}
	r := f.reports[0]
	if r.Service != "payments" || r.PolicyVersion != "v1" || !r.WindowEnd.Equal(noon.Add(time.Minute)) || !r.WindowStart.Equal(noon.Add(30*time.Second)) ||
		len(r.Counts) != 1 || r.Counts[0] != (CountRow{Source: reporting, Endpoint: "refunds-write", Decision: "would_deny", Reason: ReasonNoWritePermission, Count: 13}) {
		t.Errorf("report %+v", r)
	}
	// 2,500 distinct keys go out in bodies within the bounds.
	for i := range 2500 {
		counts.Add("spiffe://example.org/prod/caller-"+strings.Repeat("x", 40)+itoa(i), d)
	}
	if err := rep.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, r := range f.reports[1:] {
		b, _ := json.Marshal(r)
		if len(r.Counts) > MaxReportRows || len(b) > MaxReportBytes {
			t.Errorf("report of %d rows, %d bytes", len(r.Counts), len(b))
		}
		total += len(r.Counts)
	}
	if total != 2500 || len(f.reports) < 4 {
		t.Errorf("%d rows in %d reports", total, len(f.reports)-1)
	}
	// A 4xx refusal drops the counts instead of retrying forever.
	counts.Add(reporting, d)
	f.status = http.StatusForbidden
	if err := rep.Flush(context.Background()); err == nil {
		t.Fatal("refused flush succeeded")
	}
	if rows, _ := counts.Take(); len(rows) != 0 {
		t.Errorf("refused rows kept: %v", rows)
	}
}
