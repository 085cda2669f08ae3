package authz

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"
)

// bigPolicy is services services of endpoints endpoints each, with literal,
// * and ** paths, exact and prefix allows.
func bigPolicy(services, endpoints int) []byte {
	var b strings.Builder
	b.WriteString("trust_domain: example.org\nservices:\n")
	for s := 0; s < services; s++ {
		fmt.Fprintf(&b, "  svc%d:\n    identity: spiffe://example.org/prod/svc%d\n    mode: enforce\n    endpoints:\n", s, s)
		for e := 0; e < endpoints; e++ {
			fmt.Fprintf(&b, "      - name: ep%d\n        methods: [GET, POST]\n        paths: [/v1/res%d, /v1/res%d/*, /v2/res%d/**]\n        allow: [spiffe://example.org/prod/svc%d, spiffe://example.org/team%d/*]\n",
				e, e, e, e, (s+1)%services, e)
		}
	}
	return []byte(b.String())
}

// A policy of 1,000 services of 20 endpoints compiles and decides. How fast
// it compiles (target: under a second) is BenchmarkCompile1000x20's figure in
// `make bench`, not an assertion here: under -race on a shared 2-core machine
// a timed test measures the neighbours.
func TestAThousandServicesOfTwentyEndpointsCompileAndDecide(t *testing.T) {
	data := bigPolicy(1000, 20)
	start := time.Now()
	p, err := ParsePolicy(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("compiling 1,000 services x 20 endpoints (%d KiB): %s wall", len(data)>>10, time.Since(start))
	d := p.Decide(Request{Source: "spiffe://example.org/prod/svc501", Service: "svc500", Method: "POST", Path: "/v1/res19/abc"}, nil)
	if d.Reason != ReasonAllowed || d.Endpoint != "ep19" {
		t.Errorf("decision in the big policy: %+v", d)
	}
}

func BenchmarkCompile1000x20(b *testing.B) {
	data := bigPolicy(1000, 20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParsePolicy(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	p, err := ParsePolicy(bigPolicy(1000, 20))
	if err != nil {
		b.Fatal(err)
	}
	cases := map[string]Request{
		"allow-literal":  {Source: "spiffe://example.org/prod/svc501", Service: "svc500", Method: "POST", Path: "/v1/res19"},
		"allow-star":     {Source: "spiffe://example.org/prod/svc501", Service: "svc500", Method: "GET", Path: "/v1/res7/abc"},
		"allow-prefix":   {Source: "spiffe://example.org/team3/x", Service: "svc500", Method: "GET", Path: "/v2/res3/a/b/c"},
		"deny-not-allow": {Source: "spiffe://example.org/prod/svc9", Service: "svc500", Method: "POST", Path: "/v1/res7/abc"},
		"deny-no-rule":   {Source: "spiffe://example.org/prod/svc501", Service: "svc500", Method: "GET", Path: "/v9/none"},
	}
	for name, r := range cases {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Decide(r, nil)
			}
		})
	}
	q := mustParse(b, examplePolicy)
	r := Request{Source: reporting, Service: "payments", Method: "GET", Path: "/v1/reports/x", Header: http.Header{"X-Tenant": {"acme"}}, Time: noon}
	b.Run("allow-with-cel-condition", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d := q.Decide(r, nil); !d.Allowed {
				b.Fatal(d)
			}
		}
	})
}

// BenchmarkMiddlewareOverhead measures a hello-world handler over loopback
// HTTP/1.1 (keep-alive), bare and behind the middleware (enforce, allowed,
// counting, default sampled allow logs to a discarding logger). The peer
// identity is fixed (no TLS) so that the comparison is not hidden behind the
// handshake cost.
func BenchmarkMiddlewareOverhead(b *testing.B) {
	p, err := ParsePolicy(bigPolicy(1000, 20))
	if err != nil {
		b.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") })
	mw, err := Middleware(MiddlewareConfig{Service: "svc500", Policy: StaticPolicy{Policy: p}, Counts: NewCounts(0),
		PeerID: func(*http.Request) string { return "spiffe://example.org/prod/svc501" }})
	if err != nil {
		b.Fatal(err)
	}
	// Both servers are called alternately in one loop, so that the noise of
	// a shared machine falls on both alike; the metric is the extra time per
	// request behind the middleware, in percent of the bare request.
	b.Run("loopback-alternating", func(b *testing.B) {
		bare, authz := httptest.NewServer(hello), httptest.NewServer(mw(hello))
		defer bare.Close()
		defer authz.Close()
		get := func(c *http.Client, url string) time.Duration {
			start := time.Now()
			res, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatal(res.Status)
			}
			return time.Since(start)
		}
		bc, ac := bare.Client(), authz.Client()
		// Blocks of 100 request pairs; the median block ratio resists the
		// bursts of a shared machine better than the total.
		var tBare, tAuthz, blockBare, blockAuthz time.Duration
		var ratios []float64
		n := 0
		for b.Loop() {
			var x, y time.Duration
			if n%2 == 0 { // alternate which goes first
				x, y = get(bc, bare.URL+"/v1/res7/abc"), get(ac, authz.URL+"/v1/res7/abc")
			} else {
				y, x = get(ac, authz.URL+"/v1/res7/abc"), get(bc, bare.URL+"/v1/res7/abc")
			}
			tBare, tAuthz, blockBare, blockAuthz = tBare+x, tAuthz+y, blockBare+x, blockAuthz+y
			if n++; n%100 == 0 {
				ratios = append(ratios, float64(blockAuthz)/float64(blockBare))
				blockBare, blockAuthz = 0, 0
			}
		}
		b.ReportMetric(float64(tBare.Nanoseconds())/float64(b.N), "bare-ns/req")
		b.ReportMetric(float64(tAuthz.Nanoseconds())/float64(b.N), "authz-ns/req")
		if len(ratios) > 0 {
			sort.Float64s(ratios)
			b.ReportMetric(100*(ratios[len(ratios)/2]-1), "median-overhead-%")
		}
	})
	// In-process, without the network: the middleware's own cost per call.
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"bare-inprocess", hello}, {"authz-inprocess", mw(hello)}} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/v1/res7/abc", nil)
			b.ReportAllocs()
			for b.Loop() {
				c.h.ServeHTTP(discardWriter{}, req)
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) WriteHeader(int)             {}
