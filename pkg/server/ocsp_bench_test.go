package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/revoke"
)

// ocspBench is the public router over a real CA (software keys, SQLite)
// whose Responder follows its Publisher, so a good leaf's pre-signed answer
// comes from the in-process cache, as in `ca serve`.
type ocspBench struct {
	public    http.Handler // access log discarded
	responder *revoke.Responder
	clk       clock.Clock
	reqDER    []byte
	want      []byte // the cached DER answer
}

func newOCSPBench(b *testing.B) *ocspBench {
	b.Helper()
	ctx := context.Background()
	ca := newRevocationCA(b)
	clk, iss, pub, responder := ca.clk, ca.iss, ca.pub, ca.responder
	responder.Follow(pub)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, err := iss.Issue(ctx, issuer.Request{PublicKey: k.Public(), SPIFFEID: "spiffe://example.org/svc", TTL: 2 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pub.RefreshOnce(ctx); err != nil {
		b.Fatal(err)
	}
	reqDER, err := ocsp.CreateRequest(leaf.Certificate, iss.Certificate(), nil)
	if err != nil {
		b.Fatal(err)
	}
	// The first answer fills the cache; every later one is a cache hit.
	first, err := responder.Respond(ctx, reqDER)
	if err != nil || first.Status != revoke.StatusGood {
		b.Fatalf("first OCSP answer: %s, %v", first.Status, err)
	}
	ob := &ocspBench{responder: responder, clk: clk, reqDER: reqDER, want: first.DER}
	// The access log is encoded as in production, then discarded, so the
	// benchmark measures the edge and not a test buffer.
	ob.public = ob.publicLoggingTo(b, io.Discard)
	return ob
}

// publicLoggingTo is the public router with its JSON log (info level, as
// `ca serve` by default) written to w.
func (ob *ocspBench) publicLoggingTo(b *testing.B, w io.Writer) http.Handler {
	f := newFixtureWith(b, func(_ *fixture, d *Deps) {
		d.Revocation = ob.responder
		d.Clock = ob.clk
		d.Log = slog.New(slog.NewJSONHandler(w, nil))
	})
	return f.routes.Public()
}

// BenchmarkOCSP drives the public router with a valid OCSP GET and POST
// answered from the pre-signed cache, against a bare handler writing the
// same bytes: the difference is what the edge (request id, access log,
// metrics, body limit, recovery, routing, the OCSP handler) costs.
//
//	go test ./pkg/server -run '^$' -bench OCSP -benchmem -cpuprofile /tmp/ocsp.prof
func BenchmarkOCSP(b *testing.B) {
	ob := newOCSPBench(b)
	getPath := "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(ob.reqDER))
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", ocspContentType)
		_, _ = w.Write(ob.want)
	})
	for _, tc := range []struct {
		name   string
		h      http.Handler
		method string
		path   string
		body   []byte
	}{
		{"bare handler", bare, http.MethodPost, "/ocsp", ob.reqDER},
		{"GET from cache", ob.public, http.MethodGet, getPath, nil},
		{"POST from cache", ob.public, http.MethodPost, "/ocsp", ob.reqDER},
	} {
		b.Run(tc.name, func(b *testing.B) {
			body := bytes.NewReader(tc.body)
			rec := &benchRecorder{}
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(tc.body)
				req := httptest.NewRequest(tc.method, tc.path, body)
				if tc.body != nil {
					req.Header.Set("Content-Type", "application/ocsp-request")
				}
				rec.reset()
				tc.h.ServeHTTP(rec, req)
				if rec.code != http.StatusOK || !bytes.Equal(rec.body.Bytes(), ob.want) {
					b.Fatalf("%s %s: %d, %d bytes", tc.method, tc.path, rec.code, rec.body.Len())
				}
			}
		})
	}
}

// BenchmarkOCSPLoopback is BenchmarkOCSP over real HTTP on loopback: the
// public listener as New configures it (timeouts included), the access log
// written to a file as `ca serve` writes it to stderr, and parallel keep-alive
// clients POSTing the request. Its CPU profile (filter on conn.serve) shows
// the server's whole per-request cost, net/http's included.
func BenchmarkOCSPLoopback(b *testing.B) {
	ob := newOCSPBench(b)
	logFile, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = logFile.Close() })
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", ocspContentType)
		_, _ = w.Write(ob.want)
	})
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"bare handler", bare},
		{"POST from cache", ob.publicLoggingTo(b, logFile)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := New(Config{APIHandler: http.NotFoundHandler(), PublicHandler: tc.h, Log: slog.New(slog.DiscardHandler)}).public
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = srv.Serve(ln) }()
			b.Cleanup(func() { _ = srv.Close() })
			url := "http://" + ln.Addr().String() + "/ocsp"
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := client.Post(url, "application/ocsp-request", bytes.NewReader(ob.reqDER))
					if err != nil {
						b.Error(err)
						return
					}
					got, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK || !bytes.Equal(got, ob.want) {
						b.Errorf("POST /ocsp: %d, %d bytes", res.StatusCode, len(got))
						return
					}
				}
			})
		})
	}
}

// benchRecorder is a reusable ResponseWriter, so that the benchmark's own
// allocations (httptest.ResponseRecorder's) do not hide the edge's.
type benchRecorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *benchRecorder) reset() {
	if r.h == nil {
		r.h = http.Header{}
	}
	clear(r.h)
	r.code = 0
	r.body.Reset()
}

func (r *benchRecorder) Header() http.Header { return r.h }

func (r *benchRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *benchRecorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(p)
}
