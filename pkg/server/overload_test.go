package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// blockingIssuer holds every issuance until released.
type blockingIssuer struct {
	inner   LeafIssuer
	entered chan struct{}
	release chan struct{}
}

func (b *blockingIssuer) Issue(ctx context.Context, r issuer.Request) (*issuer.Issued, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.inner.Issue(ctx, r)
}

func TestEnrollmentsBeyondTheInFlightBoundAreShedWithRetryAfterAndTheirTokenIsNotSpent(t *testing.T) {
	var blk *blockingIssuer
	f := newEnrollFixtureWith(t, func(f *fixture, d *Deps) {
		d.MaxInFlightEnrollments = 1
		blk = &blockingIssuer{inner: d.Enroll.Issuer, entered: make(chan struct{}, 1), release: make(chan struct{})}
		d.Enroll.Issuer = blk
	})
	client := f.rs.client()
	_, csr := csrPEM(t)

	// The first enrollment takes the only slot and waits in the issuer.
	first := make(chan int, 1)
	go func() {
		_, res := postJSON(t, client, f.rs.apiURL+"/v1/enroll", f.oidc.GitHubToken(t, nil), CertRequest{CSR: csr})
		res.Body.Close()
		first <- res.StatusCode
	}()
	<-blk.entered

	// The second is refused at once, before its token is read.
	tok := f.oidc.GitHubToken(t, nil)
	_, res := postJSON(t, client, f.rs.apiURL+"/v1/enroll", tok, CertRequest{CSR: csr})
	p := decodeProblem(t, res)
	if res.StatusCode != http.StatusServiceUnavailable || p.Reason != ReasonOverloaded {
		t.Fatalf("second enrollment = %d %s; want 503 overloaded", res.StatusCode, p.Reason)
	}
	if ra := res.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q; want 1", ra)
	}
	// A renewal shares the bound.
	_, res = postJSON(t, client, f.rs.apiURL+"/v1/renew", "", CertRequest{CSR: csr})
	if p := decodeProblem(t, res); res.StatusCode != http.StatusServiceUnavailable || p.Reason != ReasonOverloaded {
		t.Fatalf("renewal while full = %d %s; want 503 overloaded", res.StatusCode, p.Reason)
	}
	var m dto.Metric
	if err := f.routes.enroll.load.shed.WithLabelValues(actionEnroll).Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Errorf("ca_enroll_shed_total{action=enroll} = %v; want 1", n)
	}
	// Nothing of the shed request was done: no denial audited.
	if d := f.records.denials(); len(d) != 0 {
		t.Errorf("a shed request was audited as a denial: %+v", d)
	}

	close(blk.release)
	if code := <-first; code != http.StatusCreated {
		t.Fatalf("first enrollment = %d", code)
	}
	// The slot is free again and the shed token was not spent.
	go func() { <-blk.entered }()
	_, res = postJSON(t, client, f.rs.apiURL+"/v1/enroll", tok, CertRequest{CSR: csr})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("retry with the shed token = %d %s", res.StatusCode, decodeProblem(t, res).Detail)
	}
	res.Body.Close()
	if !strings.Contains(f.logs.String(), `"reason":"overloaded"`) {
		t.Errorf("the shed request is not in the log")
	}
}
