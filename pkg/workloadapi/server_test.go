package workloadapi

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// testCA issues SVIDs for the tests.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{td.ID().URL()}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{key: key, cert: cert}
}

func (ca *testCA) svid(t *testing.T, path string, serial int64) ([]*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := spiffeid.RequireFromPath(td, path)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, URIs: []*url.URL{id.URL()}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return []*x509.Certificate{cert}, key
}

func (ca *testCA) bundle(extra ...*x509.Certificate) *spiffebundle.Bundle {
	b := spiffebundle.New(td)
	b.AddX509Authority(ca.cert)
	for _, c := range extra {
		b.AddX509Authority(c)
	}
	return b
}

// serve starts srv on a fresh socket and returns a client, a context with
// the security metadata, and the socket's address.
func serve(t *testing.T, srv *Server) (workload.SpiffeWorkloadAPIClient, context.Context, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "wapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := Listen(filepath.Join(dir, "s.sock"), -1)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "s.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return workload.NewSpiffeWorkloadAPIClient(conn), metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true"), "unix://" + filepath.Join(dir, "s.sock")
}

func TestCallsFollowTheWorkloadAPIRules(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name     string
		cfg      Config
		withSVID bool
		noMD     bool
		want     codes.Code
	}{
		{name: "a call without the security metadata is InvalidArgument", withSVID: true, noMD: true, want: codes.InvalidArgument},
		{name: "a call before the first SVID is Unavailable", want: codes.Unavailable},
		{name: "a caller whose uid is not allowed is PermissionDenied", cfg: Config{AllowUIDs: []uint32{uint32(os.Getuid()) + 1}}, withSVID: true, want: codes.PermissionDenied},
		{name: "a caller whose uid is allowed gets its SVID", cfg: Config{AllowUIDs: []uint32{uint32(os.Getuid())}}, withSVID: true, want: codes.OK},
		{name: "a caller whose gid is allowed gets its SVID", cfg: Config{AllowGIDs: []uint32{uint32(os.Getgid())}}, withSVID: true, want: codes.OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := New(tc.cfg)
			if tc.withSVID {
				chain, key := ca.svid(t, "/api", 2)
				if err := srv.SetX509SVID(chain, key); err != nil {
					t.Fatal(err)
				}
				srv.SetBundle(ca.bundle())
			}
			c, ctx, _ := serve(t, srv)
			if tc.noMD {
				ctx = context.Background()
			}
			stream, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
			if err == nil {
				var res *workload.X509SVIDResponse
				res, err = stream.Recv()
				if err == nil && res.GetSvids()[0].GetSpiffeId() != "spiffe://example.org/api" {
					t.Errorf("SVID %s", res.GetSvids()[0].GetSpiffeId())
				}
			}
			if got := status.Code(err); got != tc.want {
				t.Errorf("FetchX509SVID: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestStreamsSendAgainAfterEachRenewalAndBundleChange(t *testing.T) {
	ca := newTestCA(t)
	srv := New(Config{})
	chain, key := ca.svid(t, "/api", 2)
	if err := srv.SetX509SVID(chain, key); err != nil {
		t.Fatal(err)
	}
	srv.SetBundle(ca.bundle())
	c, ctx, _ := serve(t, srv)
	svids, err := c.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	bundles, err := c.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	serialOf := func(res *workload.X509SVIDResponse) int64 {
		cert, err := x509.ParseCertificate(res.GetSvids()[0].GetX509Svid())
		if err != nil {
			t.Fatal(err)
		}
		return cert.SerialNumber.Int64()
	}
	authorities := func(res *workload.X509BundlesResponse) int {
		certs, err := x509.ParseCertificates(res.GetBundles()["spiffe://example.org"])
		if err != nil {
			t.Fatal(err)
		}
		return len(certs)
	}
	if res, err := svids.Recv(); err != nil || serialOf(res) != 2 {
		t.Fatalf("first message: %v", err)
	}
	if res, err := bundles.Recv(); err != nil || authorities(res) != 1 {
		t.Fatalf("first bundle message: %v", err)
	}

	renewed, key2 := ca.svid(t, "/api", 3)
	if err := srv.SetX509SVID(renewed, key2); err != nil {
		t.Fatal(err)
	}
	if res, err := svids.Recv(); err != nil || serialOf(res) != 3 {
		t.Fatalf("after the renewal: %v", err)
	}

	if srv.SetBundle(ca.bundle()) {
		t.Error("an equal bundle counted as a change")
	}
	next := newTestCA(t)
	if !srv.SetBundle(ca.bundle(next.cert)) {
		t.Fatal("a bundle with a new root did not count as a change")
	}
	res, err := svids.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := x509.ParseCertificates(res.GetSvids()[0].GetBundle()); len(n) != 2 {
		t.Errorf("the SVID message after the rotation carries %d roots, want 2", len(n))
	}
	if res, err := bundles.Recv(); err != nil || authorities(res) != 2 {
		t.Fatalf("bundle message after the rotation: %v", err)
	}
}

func TestSetX509SVIDRefusesWhatIsNotAnSVID(t *testing.T) {
	ca := newTestCA(t)
	srv := New(Config{})
	chain, _ := ca.svid(t, "/api", 2)
	_, otherKey := ca.svid(t, "/api", 3)
	if err := srv.SetX509SVID(chain, otherKey); err == nil {
		t.Error("a certificate with another key's private key was accepted")
	}
	if err := srv.SetX509SVID([]*x509.Certificate{ca.cert}, ca.key); err == nil {
		t.Error("a CA certificate was accepted as an SVID")
	}
}

func TestListenMakesAPrivateSocketAndReplacesOnlyAStaleOne(t *testing.T) {
	dir, err := os.MkdirTemp("", "wapi")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")

	t.Run("a new socket is mode 0600", func(t *testing.T) {
		l, err := Listen(path, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v", fi.Mode())
		}
		t.Run("a socket in use is not taken over", func(t *testing.T) {
			if _, err := Listen(path, -1); err == nil {
				t.Error("a second agent took over a live socket")
			}
		})
	})
	t.Run("with a group the socket is 0660 and the group's", func(t *testing.T) {
		gid := os.Getgid()
		l, err := Listen(path, gid)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o660 {
			t.Errorf("mode %v, want 0660", fi.Mode())
		}
	})
	t.Run("a stale socket left by a crash is replaced", func(t *testing.T) {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		l.Close() // the file stays, nobody answers
		if _, err := os.Stat(path); err != nil {
			t.Fatal("the stale socket file is gone")
		}
		l2, err := Listen(path, -1)
		if err != nil {
			t.Fatalf("a stale socket was not replaced: %v", err)
		}
		l2.Close()
	})
	t.Run("a path that is not a socket is left alone", func(t *testing.T) {
		if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path, -1); err == nil {
			t.Error("a regular file was replaced")
		}
		if b, _ := os.ReadFile(path); string(b) != "data" {
			t.Error("the file changed")
		}
	})
}

// fakeMinter signs JWT-SVIDs with its own key, counting calls.
type fakeMinter struct {
	mu    sync.Mutex
	calls int
	now   func() time.Time
	key   *ecdsa.PrivateKey
	err   error
}

func (m *fakeMinter) MintJWT(_ context.Context, aud []string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.err != nil {
		return "", m.err
	}
	return signJWT(m.key, "k1", "spiffe://example.org/api", aud, m.now(), 10*time.Minute)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestJWTSVIDsAreCachedUntilHalfTheirLifetimeAndValidatedOnTheBundle(t *testing.T) {
	ca := newTestCA(t)
	clk := &fakeClock{t: time.Now().Truncate(time.Second)}
	jwtKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	m := &fakeMinter{now: clk.Now, key: jwtKey}
	srv := New(Config{Minter: m, Clock: clk})
	chain, key := ca.svid(t, "/api", 2)
	if err := srv.SetX509SVID(chain, key); err != nil {
		t.Fatal(err)
	}
	b := ca.bundle()
	if err := b.AddJWTAuthority("k1", &jwtKey.PublicKey); err != nil {
		t.Fatal(err)
	}
	srv.SetBundle(b)
	c, ctx, _ := serve(t, srv)
	fetch := func() string {
		t.Helper()
		res, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"vault"}})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetSvids()[0].GetSvid()
	}
	first := fetch()
	clk.add(4 * time.Minute)
	if fetch() != first || m.calls != 1 {
		t.Errorf("within half the lifetime: %d mints, want 1", m.calls)
	}
	clk.add(2 * time.Minute)
	if fetch() == first || m.calls != 2 {
		t.Errorf("past half the lifetime: %d mints, want 2", m.calls)
	}

	if _, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("without audience: %v", err)
	}
	if _, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"vault"}, SpiffeId: "spiffe://example.org/other"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("for another SPIFFE ID: %v", err)
	}

	res, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "vault", Svid: first})
	if err != nil || res.GetSpiffeId() != "spiffe://example.org/api" || res.GetClaims().GetFields()["sub"].GetStringValue() != "spiffe://example.org/api" {
		t.Fatalf("ValidateJWTSVID: %v %v", res, err)
	}
	if _, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "other", Svid: first}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("wrong audience: %v", err)
	}
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, _ := signJWT(stranger, "k1", "spiffe://example.org/api", []string{"vault"}, clk.Now(), time.Minute)
	if _, err := c.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "vault", Svid: forged}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a token signed by another key: %v", err)
	}

	t.Run("the CA refusing is PermissionDenied, the CA unreachable Unavailable", func(t *testing.T) {
		m.err = errors.Join(ErrRefused, errors.New("403 forbidden"))
		if _, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"new-audience"}}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("refused: %v", err)
		}
		m.err = errors.New("connection refused")
		if _, err := c.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"new-audience"}}); status.Code(err) != codes.Unavailable {
			t.Errorf("unreachable: %v", err)
		}
	})
}
