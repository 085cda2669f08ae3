package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

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

// An anonymous client that sends its headers and then trickles its body, or
// never sends it, must not hold an in-flight slot: before the fix one such
// connection per slot shed every real enrollment (503 overloaded) for as
// long as the server waited for the bodies.
func TestASlowBodyHoldsNoInFlightSlot(t *testing.T) {
	f := newEnrollFixtureWith(t, func(f *fixture, d *Deps) { d.MaxInFlightEnrollments = 1 })
	u, err := url.Parse(f.rs.apiURL)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: f.rs.roots, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		// Headers and the first byte of a body announced at 4,000 bytes.
		if _, err := fmt.Fprintf(conn, "POST /v1/enroll HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer x\r\n"+
			"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{", u.Host); err != nil {
			t.Fatal(err)
		}
	}
	// Enrollments over the next second, while the three bodies are
	// awaited: each must be answered 201. (Before the fix the first slow
	// request to reach the handler took the only slot, and every
	// enrollment after it was shed.)
	_, csr := csrPEM(t)
	for i := range 5 {
		time.Sleep(200 * time.Millisecond)
		_, res := postJSON(t, f.rs.client(), f.rs.apiURL+"/v1/enroll", f.oidc.GitHubToken(t, nil), CertRequest{CSR: csr})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("enrollment %d while three bodies trickle = %d %s; want 201", i, res.StatusCode, decodeProblem(t, res).Reason)
		}
		res.Body.Close()
	}
	var m dto.Metric
	if err := f.routes.enroll.load.shed.WithLabelValues(actionEnroll).Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 0 {
		t.Errorf("ca_enroll_shed_total{action=enroll} = %v; want 0: the slow bodies held slots", n)
	}
}

// errAfter yields its bytes, then err.
type errAfter struct {
	r   *strings.Reader
	err error
}

func (e *errAfter) Read(p []byte) (int, error) {
	if e.r.Len() == 0 {
		return 0, e.err
	}
	return e.r.Read(p)
}

func (e *errAfter) Close() error { return nil }

// The handler behind admit gets from requestBody what io.ReadAll of the
// body gave before admit read it ahead: every byte, and the error that
// ended the read (none at the end, the limit's *http.MaxBytesError, a cut
// connection's).
func TestTheBodyReadAheadIsTheBodyAndItsError(t *testing.T) {
	e := &enrollment{load: newAdmission(1)}
	long := strings.Repeat("b", 3000)
	cut := errors.New("connection cut")
	for _, c := range []struct {
		name    string
		body    func(w http.ResponseWriter) io.ReadCloser
		length  int64
		want    string
		wantErr func(error) bool
	}{
		{"a body of its declared length", func(http.ResponseWriter) io.ReadCloser { return io.NopCloser(strings.NewReader(long)) }, 3000, long, nil},
		{"a body of no declared length", func(http.ResponseWriter) io.ReadCloser { return io.NopCloser(strings.NewReader(long)) }, -1, long, nil},
		{"a body shorter than declared", func(http.ResponseWriter) io.ReadCloser { return io.NopCloser(strings.NewReader("ab")) }, 10, "ab", nil},
		{"a body over the limit", func(w http.ResponseWriter) io.ReadCloser {
			return http.MaxBytesReader(w, io.NopCloser(strings.NewReader(long)), 1000)
		}, -1, long[:1000], func(err error) bool { var mb *http.MaxBytesError; return errors.As(err, &mb) }},
		{"a cut connection", func(http.ResponseWriter) io.ReadCloser { return &errAfter{strings.NewReader("abc"), cut} }, 3000, "abc",
			func(err error) bool { return errors.Is(err, cut) }},
	} {
		var got []byte
		var gotErr error
		h := e.admit(actionEnroll, func(_ http.ResponseWriter, r *http.Request) error {
			got, gotErr = requestBody(r)
			return nil
		})
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/v1/enroll", nil)
		r.Body, r.ContentLength = c.body(w), c.length
		if err := h(w, r); err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want || (c.wantErr == nil) != (gotErr == nil) || c.wantErr != nil && !c.wantErr(gotErr) {
			t.Errorf("%s: requestBody = %d bytes, %v; want %d bytes", c.name, len(got), gotErr, len(c.want))
		}
	}
	// A body something read from first is read on from there.
	h := e.admit(actionEnroll, func(_ http.ResponseWriter, r *http.Request) error {
		var first [2]byte
		_, _ = io.ReadFull(r.Body, first[:])
		rest, err := requestBody(r)
		if string(rest) != "cdef" || err != nil {
			t.Errorf("after reading 2 bytes: requestBody = %q, %v; want \"cdef\"", rest, err)
		}
		return nil
	})
	if err := h(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/enroll", strings.NewReader("abcdef"))); err != nil {
		t.Fatal(err)
	}
}
