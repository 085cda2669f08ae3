package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func newCertManager(t *testing.T, f *fixture, host string) *CertManager {
	t.Helper()
	m, err := NewCertManager(CertManagerConfig{
		Issue: f.ca.issueFunc(t), TrustDomain: "example.org", Host: host,
		Lifetime: 24 * time.Hour, Clock: f.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTheServerCertificateNamesTheAPIHost(t *testing.T) {
	tests := []struct {
		name, host string
		dns        []string
		ips        []string
	}{
		{"a loopback IP gets localhost and 127.0.0.1", "127.0.0.1", []string{"localhost"}, []string{"127.0.0.1"}},
		{"localhost gets 127.0.0.1", "localhost", []string{"localhost"}, []string{"127.0.0.1"}},
		{"a DNS name gets localhost but no IP", "ca.example.org", []string{"ca.example.org", "localhost"}, nil},
		{"another IP keeps it and adds 127.0.0.1", "10.1.2.3", []string{"localhost"}, []string{"10.1.2.3", "127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			m := newCertManager(t, f, tt.host)
			if err := m.Renew(context.Background()); err != nil {
				t.Fatal(err)
			}
			leaf := m.Current().Leaf
			if strings.Join(leaf.DNSNames, ",") != strings.Join(tt.dns, ",") {
				t.Errorf("DNS names = %v, want %v", leaf.DNSNames, tt.dns)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if strings.Join(ips, ",") != strings.Join(tt.ips, ",") {
				t.Errorf("IPs = %v, want %v", ips, tt.ips)
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://example.org/ca/server" {
				t.Errorf("URIs = %v", leaf.URIs)
			}
		})
	}
}

func TestTheServerCertificateIsRenewedAfterTwoThirdsOfItsLifetime(t *testing.T) {
	f := newFixture(t)
	m := newCertManager(t, f, "127.0.0.1")
	ctx := context.Background()
	if renewed, err := m.RenewIfDue(ctx); err != nil || !renewed {
		t.Fatalf("first RenewIfDue = %v, %v", renewed, err)
	}
	first := m.Current().Leaf.SerialNumber
	f.clock.Advance(15 * time.Hour)
	if renewed, _ := m.RenewIfDue(ctx); renewed {
		t.Fatal("renewed at 15h of 24h")
	}
	f.clock.Advance(2 * time.Hour)
	if renewed, err := m.RenewIfDue(ctx); err != nil || !renewed {
		t.Fatalf("not renewed at 17h of 24h: %v", err)
	}
	if m.Current().Leaf.SerialNumber.Cmp(first) == 0 {
		t.Error("same certificate after renewal")
	}
}

func TestAFailedRenewalKeepsTheCurrentCertificate(t *testing.T) {
	f := newFixture(t)
	m := newCertManager(t, f, "127.0.0.1")
	if err := m.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := m.Current()
	m.cfg.Issue = func(context.Context, ServerCertRequest) ([]byte, [][]byte, error) { return nil, nil, errBoom }
	if err := m.Renew(context.Background()); !errors.Is(err, errBoom) {
		t.Fatalf("err = %v", err)
	}
	if m.Current() != before {
		t.Error("certificate replaced after a failed renewal")
	}
}

// runningServer is a Server on loopback listeners with its client settings.
type runningServer struct {
	apiURL, publicURL string
	roots             *x509.CertPool
	cancel            context.CancelFunc
	done              chan error
}

func startServer(t *testing.T, f *fixture) *runningServer {
	t.Helper()
	m := newCertManager(t, f, "127.0.0.1")
	if err := m.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(f.logs, nil))
	srv := New(Config{
		APIHandler: f.routes.API(), PublicHandler: f.routes.Public(),
		TLS:           APITLSConfig(m, f.ca, f.clock, time.Minute, log),
		ShutdownGrace: 5 * time.Second, Log: log,
	})
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pubLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningServer{
		apiURL: "https://" + apiLn.Addr().String(), publicURL: "http://" + pubLn.Addr().String(),
		roots: x509.NewCertPool(), cancel: cancel, done: make(chan error, 1),
	}
	rs.roots.AddCert(f.ca.root)
	go func() { rs.done <- srv.Serve(ctx, apiLn, pubLn) }()
	t.Cleanup(func() {
		cancel()
		<-rs.done
	})
	return rs
}

func (rs *runningServer) client(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: rs.roots, Certificates: certs, MinVersion: tls.VersionTLS12,
	}}}
}

func TestTheAPIListenerServesHTTPSWithACertificateFromTheCA(t *testing.T) {
	f := newFixture(t)
	rs := startServer(t, f)
	res, err := rs.client().Get(rs.apiURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil || res.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("got %d %+v", res.StatusCode, res.TLS)
	}
	if got := res.TLS.PeerCertificates[0].URIs[0].String(); got != "spiffe://example.org/ca/server" {
		t.Errorf("server SPIFFE ID = %q", got)
	}
	res, err = rs.client().Get(rs.publicURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("public healthz = %d", res.StatusCode)
	}
}

func TestTLS11IsRefused(t *testing.T) {
	f := newFixture(t)
	rs := startServer(t, f)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rs.roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}}
	if res, err := c.Get(rs.apiURL + "/healthz"); err == nil {
		res.Body.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}

func TestAClientCertificateFromTheCAIsVerifiedAndLogged(t *testing.T) {
	f := newFixture(t)
	rs := startServer(t, f)
	cert := f.ca.clientCert(t, "spiffe://example.org/workload/a")
	res, err := rs.client(cert).Get(rs.apiURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if !strings.Contains(f.logs.String(), `"client_spiffe_id":"spiffe://example.org/workload/a"`) {
		t.Errorf("client SPIFFE ID not in access log:\n%s", f.logs)
	}
}

func TestAClientCertificateFromAnotherCAIsRefused(t *testing.T) {
	f := newFixture(t)
	rs := startServer(t, f)
	other := newTestCA(t, f.clock)
	cert := other.clientCert(t, "spiffe://evil.example/x")
	res, err := rs.client(cert).Get(rs.apiURL + "/healthz")
	if err == nil {
		res.Body.Close()
		t.Fatal("a foreign client certificate was accepted")
	}
}

func TestShutdownIsGracefulAndServeReturnsNil(t *testing.T) {
	f := newFixture(t)
	rs := startServer(t, f)
	res, err := rs.client().Get(rs.publicURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(res.Body).Decode(&body)
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	rs.cancel()
	select {
	case err := <-rs.done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
		rs.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := rs.client().Get(rs.publicURL + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
}
