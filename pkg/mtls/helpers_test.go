package mtls_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/testca"
)

// t0 is the fake "now" of the fixtures.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

// fixture is a test kit whose CRL is served over loopback HTTP.
type fixture struct {
	kit       *testca.Kit
	clk       *clock.Fake
	crl       atomic.Pointer[[]byte]
	crlHits   atomic.Int64
	crlServer *httptest.Server
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{clk: clock.NewFake(t0)}
	f.crlServer = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.crlHits.Add(1)
		b := f.crl.Load()
		if b == nil {
			http.Error(w, "no CRL", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(*b)
	}))
	t.Cleanup(f.crlServer.Close)
	kit, err := testca.NewKit(testca.KitOptions{Now: t0, CRLURL: f.crlServer.URL + "/crl/testkit.crl"})
	if err != nil {
		t.Fatal(err)
	}
	f.kit = kit
	f.crl.Store(&kit.CRL)
	return f
}

func (f *fixture) cred(name string) *testca.KitCredential {
	c := f.kit.Credential(name)
	if c == nil {
		panic("no credential " + name)
	}
	return c
}

// bundle is the kit's trust bundle.
func (f *fixture) bundle() *spiffebundle.Bundle {
	return spiffebundle.FromX509Authorities(f.kit.CA.TrustDomain, []*x509.Certificate{f.kit.CA.Root})
}

func (f *fixture) revocation(t testing.TB, failOpen bool) *mtls.RevocationChecker {
	t.Helper()
	r, err := mtls.NewRevocationChecker(mtls.RevocationConfig{CRL: true, FailOpen: failOpen, Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// config is the package Config the kit's expectations assume: only the kit's
// bundle, only the kit's authorized ID, CRL checking on, the fake clock.
func (f *fixture) config(t testing.TB, own string, rec *recorder) mtls.Config {
	t.Helper()
	return mtls.Config{
		Bundles:    f.bundle(),
		Identity:   mtls.StaticIdentity{Cert: f.cred(own).TLSCertificate()},
		Authorize:  mtls.AuthorizeID(spiffeid.RequireFromString(f.kit.AuthorizedID)),
		Revocation: f.revocation(t, false),
		Clock:      f.clk,
		OnReject:   rec.add,
	}
}

// recorder collects rejections.
type recorder struct {
	mu   sync.Mutex
	list []mtls.Rejection
}

func (r *recorder) add(x mtls.Rejection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, x)
}

func (r *recorder) take() []mtls.Rejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.list
	r.list = nil
	return out
}

func reasons(rs []mtls.Rejection) []mtls.Reason {
	var out []mtls.Reason
	for _, r := range rs {
		out = append(out, r.Reason)
	}
	return out
}

// server is a long-running TLS server on loopback: every accepted connection
// is handshaken, answered with "ok\n" on success, and its handshake error
// reported on errs.
type server struct {
	addr string
	errs chan error
}

func startServer(t testing.TB, cfg *tls.Config) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), errs: make(chan error, 100)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer raw.Close()
				_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
				conn := tls.Server(raw, cfg)
				err := conn.HandshakeContext(context.Background())
				if err == nil {
					_, err = conn.Write([]byte("ok\n"))
				}
				s.errs <- err
				if err == nil {
					// Wait for the client to close, so that our close does not
					// race its read of "ok".
					_, _ = conn.Read(make([]byte, 1))
				}
			}()
		}
	}()
	return s
}

// serverResult is the server side's handshake error for the last connection.
func (s *server) result(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the server reported no handshake")
		return nil
	}
}

// dial connects, handshakes and reads the server's "ok". The error is the
// handshake's or, in TLS 1.3 where a client learns of its rejection after its
// handshake, the read's.
func dial(t testing.TB, addr string, cfg *tls.Config) error {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = "127.0.0.1"
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(context.Background()); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ok\n" {
		return errors.New("unexpected answer " + line)
	}
	return nil
}

func mustServer(t testing.TB, c mtls.Config) *tls.Config {
	t.Helper()
	cfg, err := mtls.ServerTLSConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustClient(t testing.TB, c mtls.Config) *tls.Config {
	t.Helper()
	cfg, err := mtls.ClientTLSConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
