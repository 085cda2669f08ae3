package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// blockingSigner stands for a token behind a partition: Sign blocks until
// release is closed. It counts the calls that reached it.
type blockingSigner struct {
	crypto.Signer
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (b *blockingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	<-b.release
	return b.Signer.Sign(r, digest, opts)
}

// signingIssuer signs leaves as pkg/issuer does, with the signer bound to
// the request's context (hsm.WithContext), and records nothing unless
// signing succeeded.
type signingIssuer struct {
	ca      *testCA
	signer  crypto.Signer
	records *memRecords
}

func (si *signingIssuer) Issue(ctx context.Context, r issuer.Request) (*issuer.Issued, error) {
	u, err := url.Parse(r.SPIFFEID)
	if err != nil {
		return nil, err
	}
	now := si.ca.clock.Now()
	der, err := x509.CreateCertificate(nil, &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), NotBefore: now, NotAfter: now.Add(r.TTL), URIs: []*url.URL{u},
	}, si.ca.inter, r.PublicKey, hsm.WithContext(ctx, si.signer))
	if err != nil {
		return nil, fmt.Errorf("test issuer: signing: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	sn := fmt.Sprintf("%x", cert.SerialNumber)
	si.records.mu.Lock()
	si.records.certs[sn] = store.Certificate{Serial: sn, SPIFFEID: r.SPIFFEID, DER: der, Status: store.CertActive}
	si.records.mu.Unlock()
	return &issuer.Issued{Serial: sn, Certificate: cert, DER: der, NotAfter: cert.NotAfter}, nil
}

// acmePolicy trusts oidc's tokens for repositories of the acme owner.
func acmePolicy(t testing.TB, oidc *testkit.OIDCIssuer) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse([]byte(`trust_domain: example.org
token_issuers:
  - name: github
    issuer: ` + oidc.URL + `
    audience: ` + testkit.DefaultOIDCAudience + `
rules:
  - name: acme-ci
    issuer: github
    when: claims.repository_owner == "acme"
    spiffe_id: spiffe://example.org/ci/{{claims.repository|path}}
    max_ttl: 1h
    ttl: 15m
`))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func TestAHungHSMGivesHSMUnavailableAtTheRequestDeadline(t *testing.T) {
	oidc := testkit.NewOIDCIssuer(t)
	pol := acmePolicy(t, oidc)
	const deadline = time.Second
	const workers = 2
	var hung *blockingSigner
	f := newFixtureWith(t, func(f *fixture, d *Deps) {
		d.Policy = policy.NewHolder(pol)
		d.Verifier = enroll.NewVerifier(d.Clock, enroll.WithHTTPClient(oidc.Client()))
		d.BodyLimit = 64 << 10
		d.RequestTimeout = deadline
		hung = &blockingSigner{Signer: f.ca.interKey, release: make(chan struct{})}
		pool := hsm.NewWorkers(workers, nil)
		d.Enroll.Issuer = &signingIssuer{ca: f.ca, signer: pool.Signer(hung, 0), records: f.records}
	})
	t.Cleanup(func() { close(hung.release) })
	rs := startServer(t, f)
	client := rs.client()

	const requests = 6
	var wg sync.WaitGroup
	type result struct {
		status     int
		reason     Reason
		retryAfter string
		took       time.Duration
	}
	results := make(chan result, requests)
	for range requests {
		token := oidc.GitHubToken(t, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, csr := csrPEM(t)
			raw, _ := json.Marshal(CertRequest{CSR: csr})
			req, _ := http.NewRequest(http.MethodPost, rs.apiURL+"/v1/enroll", bytes.NewReader(raw))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			start := time.Now()
			res, err := client.Do(req)
			if err != nil {
				t.Errorf("enroll with a hung HSM: no answer after %v: %v", time.Since(start), err)
				return
			}
			defer res.Body.Close()
			var p Problem
			_ = json.NewDecoder(res.Body).Decode(&p)
			results <- result{res.StatusCode, p.Reason, res.Header.Get("Retry-After"), time.Since(start)}
		}()
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.status != http.StatusServiceUnavailable || r.reason != ReasonHSMUnavailable {
			t.Errorf("enroll with a hung HSM: %d %s; want 503 hsm_unavailable", r.status, r.reason)
		}
		if r.retryAfter == "" {
			t.Error("503 hsm_unavailable without Retry-After")
		}
		if r.took > deadline+time.Second {
			t.Errorf("answered after %v; the request deadline is %v", r.took, deadline)
		}
	}
	hung.mu.Lock()
	calls := hung.calls
	hung.mu.Unlock()
	if calls > workers {
		t.Errorf("%d signing calls reached the hung token; want at most the %d workers", calls, workers)
	}
	if len(f.records.certs) != 0 {
		t.Errorf("%d certificates recorded while the HSM hung", len(f.records.certs))
	}
	if n := strings.Count(f.logs.String(), "request failed: dependency unavailable"); n != 1 {
		t.Errorf("the burst of hsm_unavailable failures was logged %d times at error level; want once", n)
	}
}

func TestUnavailableDependenciesAreLoggedOncePerBurst(t *testing.T) {
	f := newFixture(t)
	e := f.routes.edge
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	fail := func(err error) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		e.fail(w, r, err)
		return w
	}
	storeDown := fmt.Errorf("postgres: %w: %w", store.ErrUnavailable, context.DeadlineExceeded)
	for range 5 {
		if w := fail(storeDown); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("store unavailable: %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
		}
	}
	// A bare deadline (a store call that did not map it) is the database too.
	if w := fail(fmt.Errorf("record: %w", context.DeadlineExceeded)); !strings.Contains(w.Body.String(), `"store_unavailable"`) {
		t.Errorf("a passed deadline: %s; want store_unavailable", w.Body.String())
	}
	if n := strings.Count(f.logs.String(), "request failed: dependency unavailable"); n != 1 {
		t.Errorf("a burst of 6 failures logged %d times at error level; want 1", n)
	}
	f.clock.Advance(burstWindow)
	fail(storeDown)
	if n := strings.Count(f.logs.String(), "request failed: dependency unavailable"); n != 2 {
		t.Errorf("after a quiet window the next failure was not logged: %d lines", n)
	}
	if !strings.Contains(f.logs.String(), `"previous_burst_suppressed":5`) {
		t.Errorf("the new burst's line does not count the previous burst's failures:\n%s", f.logs.String())
	}
	// Client mistakes carry no Retry-After.
	if w := fail(errors.New("x")); w.Header().Get("Retry-After") != "" {
		t.Error("Retry-After on a 500")
	}
}

func TestAStreamingStepGetsTheRequestTimeoutAfresh(t *testing.T) {
	var stepErr, reqErr error
	var hasDeadline bool
	h := requestDeadline(20 * time.Millisecond)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // the request's own deadline passes
		reqErr = r.Context().Err()
		ctx, cancel := stepContext(r.Context())
		defer cancel()
		_, hasDeadline = ctx.Deadline()
		stepErr = ctx.Err()
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/certificates.csv", nil))
	if !errors.Is(reqErr, context.DeadlineExceeded) {
		t.Fatalf("request context: %v", reqErr)
	}
	if stepErr != nil || !hasDeadline {
		t.Errorf("a step after the request deadline: err %v, deadline %v; want a fresh bounded context", stepErr, hasDeadline)
	}
}

// notRecordingIssuer signs but cannot record, as pkg/issuer fails when the
// database stops answering after the HSM signed.
type notRecordingIssuer struct{}

func (notRecordingIssuer) Issue(context.Context, issuer.Request) (*issuer.Issued, error) {
	return nil, &issuer.NotRecordedError{Serial: "7abc", Err: fmt.Errorf("postgres: %w: %w", store.ErrUnavailable, context.DeadlineExceeded)}
}

func TestASignedButUnrecordedCertificateIsAuditedAndNotReturned(t *testing.T) {
	oidc := testkit.NewOIDCIssuer(t)
	pol := acmePolicy(t, oidc)
	f := newFixtureWith(t, func(f *fixture, d *Deps) {
		d.Policy = policy.NewHolder(pol)
		d.Verifier = enroll.NewVerifier(d.Clock, enroll.WithHTTPClient(oidc.Client()))
		d.BodyLimit = 64 << 10
		d.Enroll.Issuer = notRecordingIssuer{}
	})
	rs := startServer(t, f)
	_, csr := csrPEM(t)
	_, res := postJSON(t, rs.client(), rs.apiURL+"/v1/enroll", oidc.GitHubToken(t, nil), CertRequest{CSR: csr})
	body := readAll(t, res)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"store_unavailable"`) {
		t.Fatalf("enroll = %d %s; want 503 store_unavailable", res.StatusCode, body)
	}
	if strings.Contains(string(body), "BEGIN CERTIFICATE") {
		t.Fatal("the unrecorded certificate was returned")
	}
	denials := f.records.denials()
	if len(denials) != 1 {
		t.Fatalf("%d denials audited, want 1", len(denials))
	}
	var details map[string]any
	_ = json.Unmarshal(denials[0].Details, &details)
	if denials[0].Reason != string(ReasonStoreUnavailable) || details["signed_not_recorded"] != "7abc" {
		t.Errorf("audit entry %s %s; want reason store_unavailable and signed_not_recorded 7abc", denials[0].Reason, denials[0].Details)
	}
}
