package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	gojwtsvid "github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	gospiffe "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/server"
)

// runningAgent is a `ca agent` process and its socket.
type runningAgent struct {
	cmd    *exec.Cmd
	stderr *testkit.LockedBuffer
	stdout *testkit.LockedBuffer
	socket string
	addr   string // unix:// address for go-spiffe
	exited chan error
}

// startAgent enrolls repository's identity with ttl, writes its files and
// runs `ca agent` on them.
func startAgent(t *testing.T, e *enrollE2E, repository, ttl string, extra ...string) *runningAgent {
	t.Helper()
	key := p256(t)
	tok := e.oidc.GitHubToken(t, map[string]any{"repository": repository})
	a := e.post(t, e.client, "/v1/enroll", tok, server.CertRequest{CSR: string(newCSR(t, key, nil)), TTL: ttl})
	if a.status != http.StatusCreated {
		t.Fatalf("enroll %s: %d %s", repository, a.status, a.problem.Detail)
	}
	dir := t.TempDir()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"key.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), "cert.pem": []byte(a.cert.Certificate),
		"chain.pem": []byte(a.cert.Chain), "bundle.pem": e.bundle,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return runAgent(t, e, dir, ttl, extra...)
}

// runAgent runs `ca agent` on the files in dir and returns once its socket
// exists.
func runAgent(t *testing.T, e *enrollE2E, dir, ttl string, extra ...string) *runningAgent {
	t.Helper()
	// unix socket paths are limited to 108 bytes: keep it short.
	sockDir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	ra := &runningAgent{stderr: &testkit.LockedBuffer{}, stdout: &testkit.LockedBuffer{}, socket: filepath.Join(sockDir, "api.sock"), exited: make(chan error, 1)}
	ra.addr = "unix://" + ra.socket
	f := func(n string) string { return filepath.Join(dir, n) }
	args := append([]string{"agent", "--socket", ra.socket, "--server", e.s.apiURL, "--trust-domain", e2eTrustDomain,
		"--key", f("key.pem"), "--cert", f("cert.pem"), "--chain", f("chain.pem"), "--bundle", f("bundle.pem"), "--ttl", ttl}, extra...)
	ra.cmd = exec.Command(caBinary, args...)
	ra.cmd.Env = testkit.ChildEnv(nil)
	ra.cmd.Stderr, ra.cmd.Stdout = ra.stderr, ra.stdout
	if err := ra.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { ra.exited <- ra.cmd.Wait() }()
	t.Cleanup(func() {
		if ra.cmd.ProcessState == nil {
			_ = ra.cmd.Process.Kill()
			<-ra.exited
		}
		if t.Failed() {
			t.Logf("ca agent stderr:\n%s\nstdout:\n%s", ra.stderr, ra.stdout)
		}
	})
	testkit.EventuallyTrue(t, 30*time.Second, "the agent's socket appears", func() bool {
		select {
		case err := <-ra.exited:
			t.Fatalf("ca agent exited early (%v):\n%s", err, ra.stderr)
		default:
		}
		_, err := os.Stat(ra.socket)
		return err == nil
	})
	return ra
}

// forceRenewal sends the agent SIGUSR1: it renews at once.
func (ra *runningAgent) forceRenewal(t *testing.T) {
	t.Helper()
	if err := ra.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
}

// x509Updates collects what a go-spiffe watcher receives.
type x509Updates struct {
	mu      sync.Mutex
	serials []string
	roots   []int
}

func (u *x509Updates) OnX509ContextUpdate(c *gospiffe.X509Context) {
	u.mu.Lock()
	defer u.mu.Unlock()
	svid := c.DefaultSVID()
	u.serials = append(u.serials, svid.Certificates[0].SerialNumber.Text(16))
	n := 0
	for _, b := range c.Bundles.Bundles() {
		n += len(b.X509Authorities())
	}
	u.roots = append(u.roots, n)
}

func (u *x509Updates) OnX509ContextWatchError(error) {}

func (u *x509Updates) last() (count int, serial string, roots int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.serials) == 0 {
		return 0, "", 0
	}
	return len(u.serials), u.serials[len(u.serials)-1], u.roots[len(u.roots)-1]
}

// TestAgentServesTheSPIFFEWorkloadAPIToGoSPIFFE runs `ca serve` on Postgres
// and SoftHSM and two `ca agent`s, and talks to them only with go-spiffe's
// own clients, as a SPIFFE workload would.
func TestAgentServesTheSPIFFEWorkloadAPIToGoSPIFFE(t *testing.T) {
	e := startEnrollE2E(t)
	// payments' 3m certificate is not due for about 2 minutes (2/3 of its
	// lifetime from when it was obtained, although the CA backdates its
	// notBefore by 5 minutes): the renewals below are forced with SIGUSR1.
	metricsAddr := testkit.FreeAddr(t)
	payments := startAgent(t, e, "acme/payments", "3m", "--metrics-addr", metricsAddr)
	started := time.Now()
	billing := startAgent(t, e, "acme/billing", "1h")
	testkit.EventuallyTrue(t, 30*time.Second, "payments' renewal scheduled", func() bool {
		return strings.Contains(payments.stderr.String(), "next renewal of serial")
	})
	// Not at once: about 2m (±9s jitter) after the certificate was obtained.
	line := payments.stderr.String()
	line = line[strings.Index(line, "next renewal of serial"):]
	line = line[:strings.IndexByte(line, '\n')]
	at, err := time.Parse(time.RFC3339, line[strings.LastIndexByte(line, ' ')+1:])
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if d := at.Sub(started); d < 100*time.Second {
		t.Errorf("a 3m certificate obtained now is renewed %v after the agent started (%s), want about 2m", d.Round(time.Second), line)
	}
	paymentsID := spiffeid.RequireFromString("spiffe://" + e2eTrustDomain + "/gh/acme/payments")
	billingID := spiffeid.RequireFromString("spiffe://" + e2eTrustDomain + "/gh/acme/billing")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("the socket is created mode 0600", func(t *testing.T) {
		fi, err := os.Stat(payments.socket)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
		}
	})

	t.Run("X509Source gets the SVID and bundle", func(t *testing.T) {
		src, err := gospiffe.NewX509Source(ctx, gospiffe.WithClientOptions(gospiffe.WithAddr(payments.addr)))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		svid, err := src.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if svid.ID != paymentsID {
			t.Errorf("SVID %s, want %s", svid.ID, paymentsID)
		}
		b, err := src.GetX509BundleForTrustDomain(paymentsID.TrustDomain())
		if err != nil || len(b.X509Authorities()) != 1 {
			t.Fatalf("bundle: %v (%d authorities)", err, len(b.X509Authorities()))
		}
		if _, _, err := x509svidVerify(svid.Certificates, b.X509Authorities()); err != nil {
			t.Errorf("the SVID does not verify against the served bundle: %v", err)
		}
	})

	t.Run("two go-spiffe services with AuthorizeID talk mTLS through their agents", func(t *testing.T) {
		srvSrc, err := gospiffe.NewX509Source(ctx, gospiffe.WithClientOptions(gospiffe.WithAddr(billing.addr)))
		if err != nil {
			t.Fatal(err)
		}
		defer srvSrc.Close()
		cliSrc, err := gospiffe.NewX509Source(ctx, gospiffe.WithClientOptions(gospiffe.WithAddr(payments.addr)))
		if err != nil {
			t.Fatal(err)
		}
		defer cliSrc.Close()
		l, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(srvSrc, srvSrc, tlsconfig.AuthorizeID(paymentsID)))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = io.WriteString(c, "hello from billing\n")
				}()
			}
		}()
		dial := func(authorize spiffeid.ID) (string, error) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", l.Addr().String(), tlsconfig.MTLSClientConfig(cliSrc, cliSrc, tlsconfig.AuthorizeID(authorize)))
			if err != nil {
				return "", err
			}
			defer c.Close()
			b, err := io.ReadAll(c)
			return string(b), err
		}
		got, err := dial(billingID)
		if err != nil || got != "hello from billing\n" {
			t.Fatalf("payments -> billing: %q %v", got, err)
		}
		if _, err := dial(paymentsID); err == nil {
			t.Error("the client accepted billing's certificate while authorizing only payments")
		}
	})

	t.Run("a JWT-SVID is fetched and validated through the API", func(t *testing.T) {
		c, err := gospiffe.New(ctx, gospiffe.WithAddr(payments.addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		svid, err := c.FetchJWTSVID(ctx, gojwtsvid.Params{Audience: "vault"})
		if err != nil {
			t.Fatal(err)
		}
		if svid.ID != paymentsID {
			t.Errorf("JWT-SVID for %s, want %s", svid.ID, paymentsID)
		}
		again, err := c.FetchJWTSVID(ctx, gojwtsvid.Params{Audience: "vault"})
		if err != nil || again.Marshal() != svid.Marshal() {
			t.Errorf("a second fetch within half the lifetime did not come from the cache (%v)", err)
		}
		v, err := c.ValidateJWTSVID(ctx, svid.Marshal(), "vault")
		if err != nil || v.ID != paymentsID {
			t.Fatalf("ValidateJWTSVID: %v %v", v, err)
		}
		if _, err := c.ValidateJWTSVID(ctx, svid.Marshal(), "someone-else"); status.Code(err) != codes.InvalidArgument {
			t.Errorf("validating for another audience: %v, want InvalidArgument", err)
		}
		// The JWT bundle the agent serves verifies it as an outside party would.
		bundles, err := c.FetchJWTBundles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gojwtsvid.ParseAndValidate(svid.Marshal(), bundles, []string{"vault"}); err != nil {
			t.Errorf("the token does not verify with the served JWT bundle: %v", err)
		}
		// The billing agent validates payments' token with its own cached bundle.
		bc, err := gospiffe.New(ctx, gospiffe.WithAddr(billing.addr))
		if err != nil {
			t.Fatal(err)
		}
		defer bc.Close()
		if v, err := bc.ValidateJWTSVID(ctx, svid.Marshal(), "vault"); err != nil || v.ID != paymentsID {
			t.Errorf("billing's agent: %v %v", v, err)
		}
	})

	t.Run("a call without the workload.spiffe.io metadata is refused with InvalidArgument", func(t *testing.T) {
		conn, err := grpc.NewClient(payments.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = workload.NewSpiffeWorkloadAPIClient(conn).FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"vault"}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("FetchJWTSVID without metadata: %v, want InvalidArgument", err)
		}
	})

	t.Run("a caller whose uid is not allowed is refused with PermissionDenied and a log line", func(t *testing.T) {
		other := strconv.Itoa(os.Getuid() + 1)
		guarded := startAgent(t, e, "acme/ledger", "1h", "--allow-uid", other)
		c, err := gospiffe.New(ctx, gospiffe.WithAddr(guarded.addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.FetchJWTSVID(ctx, gojwtsvid.Params{Audience: "vault"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("FetchJWTSVID from uid %d: %v, want PermissionDenied", os.Getuid(), err)
		}
		// The agent writes the line before it answers, but its stderr
		// reaches the test through a pipe: wait for it (bounded).
		logged := func() bool {
			out := guarded.stderr.String()
			return strings.Contains(out, "caller refused") && strings.Contains(out, `"uid":`+strconv.Itoa(os.Getuid()))
		}
		testkit.EventuallyTrue(t, 30*time.Second, "a log line naming the refused caller", logged)
	})

	t.Run("a renewal and a root rotation reach the streams (go-spiffe and Envoy SDS) as new messages", func(t *testing.T) {
		c, err := gospiffe.New(ctx, gospiffe.WithAddr(payments.addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		u := &x509Updates{}
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		go func() { _ = c.WatchX509Context(wctx, u) }()
		var first string
		testkit.EventuallyTrue(t, 30*time.Second, "the first X.509 context", func() bool {
			var n int
			n, first, _ = u.last()
			return n > 0
		})
		// Envoy's side: an SDS client built from go-control-plane, on the same socket.
		conn, err := grpc.NewClient(payments.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sds, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(wctx)
		if err != nil {
			t.Fatal(err)
		}
		names := []string{paymentsID.String(), "ROOTCA"}
		const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
		if err := sds.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: names}); err != nil {
			t.Fatal(err)
		}
		sdsSerial := func(res *discoveryv3.DiscoveryResponse) (serial string, trusted bool) {
			for _, a := range res.GetResources() {
				var s tlsv3.Secret
				if err := a.UnmarshalTo(&s); err != nil {
					t.Fatal(err)
				}
				switch s.GetName() {
				case paymentsID.String():
					if b, _ := pem.Decode(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()); b != nil {
						if c, err := x509.ParseCertificate(b.Bytes); err == nil {
							serial = c.SerialNumber.Text(16)
						}
					}
				case "ROOTCA":
					trusted = len(s.GetValidationContext().GetTrustedCa().GetInlineBytes()) > 0
				}
			}
			return serial, trusted
		}
		res, err := sds.Recv()
		if err != nil {
			t.Fatal(err)
		}
		sdsFirst, trusted := sdsSerial(res)
		if sdsFirst == "" || !trusted {
			t.Fatalf("SDS: certificate serial %q, validation context %v", sdsFirst, trusted)
		}
		if err := sds.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: names, VersionInfo: res.GetVersionInfo(), ResponseNonce: res.GetNonce()}); err != nil {
			t.Fatal(err)
		}

		payments.forceRenewal(t)
		testkit.EventuallyTrue(t, 30*time.Second, "a renewed SVID on the stream after SIGUSR1", func() bool {
			_, s, _ := u.last()
			return s != first
		})
		for {
			res, err := sds.Recv()
			if err != nil {
				t.Fatalf("SDS after the renewal: %v", err)
			}
			if s, _ := sdsSerial(res); s != sdsFirst {
				break
			}
		}
		out, errOut, code := runCA(t, e.vars, "issuers", "rotate", "--root", "--actor", "e2e-admin")
		if code != 0 {
			t.Fatalf("ca issuers rotate --root = %d\n%s\n%s", code, out, errOut)
		}
		// The CA serves the new root within its bundle recheck (5s); the
		// agent refreshes /bundle.json after each renewal: then force one.
		plain := &http.Client{Timeout: 10 * time.Second}
		testkit.EventuallyTrue(t, 30*time.Second, "the CA serves both roots", func() bool {
			_, b := get(t, plain, e.s.publicURL+"/bundle.pem")
			return len(parseCerts(b)) == 2
		})
		payments.forceRenewal(t)
		testkit.EventuallyTrue(t, 30*time.Second, "the new root on the stream", func() bool {
			_, _, roots := u.last()
			return roots == 2
		})
		if !strings.Contains(payments.stderr.String(), "trust bundle updated") {
			t.Errorf("no log line for the bundle change:\n%s", payments.stderr)
		}
	})

	t.Run("--health exits 0 while the agent serves a valid SVID", func(t *testing.T) {
		out, errOut, code := runCA(t, nil, "agent", "--socket", payments.socket, "--health")
		if code != 0 || !strings.Contains(out, paymentsID.String()) {
			t.Errorf("ca agent --health = %d %s %s", code, out, errOut)
		}
		if _, _, code := runCA(t, nil, "agent", "--socket", filepath.Join(t.TempDir(), "none.sock"), "--health"); code != 1 {
			t.Errorf("--health without an agent = %d, want 1", code)
		}
	})

	t.Run("with --token-file and no certificate yet the agent enrolls first", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "bundle.pem"), e.bundle, 0o644); err != nil {
			t.Fatal(err)
		}
		tok := filepath.Join(dir, "token")
		if err := os.WriteFile(tok, []byte(e.oidc.GitHubToken(t, map[string]any{"repository": "acme/first"})), 0o600); err != nil {
			t.Fatal(err)
		}
		first := runAgent(t, e, dir, "1h", "--token-file", tok)
		svid, err := gospiffe.FetchX509SVID(ctx, gospiffe.WithAddr(first.addr))
		if err != nil {
			t.Fatal(err)
		}
		if want := "spiffe://" + e2eTrustDomain + "/gh/acme/first"; svid.ID.String() != want {
			t.Errorf("SVID %s, want %s", svid.ID, want)
		}
		if got := serialIn(t, filepath.Join(dir, "cert.pem")); got != svid.Certificates[0].SerialNumber.Text(16) {
			t.Errorf("cert.pem holds serial %s, the agent serves %s", got, svid.Certificates[0].SerialNumber.Text(16))
		}
	})

	t.Run("during a CA outage the agent keeps serving, logs and counts the failed renewals", func(t *testing.T) {
		if err := e.s.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-e.s.exited
		payments.forceRenewal(t)
		testkit.EventuallyTrue(t, 30*time.Second, "a failed renewal logged", func() bool {
			return strings.Contains(payments.stderr.String(), "renewal failed; serving the last good SVID")
		})
		_, body := get(t, &http.Client{Timeout: 10 * time.Second}, "http://"+metricsAddr+"/metrics")
		var failures float64
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "ca_agent_renewal_failures_total "); ok {
				failures, _ = strconv.ParseFloat(v, 64)
			}
		}
		if failures < 1 {
			t.Errorf("ca_agent_renewal_failures_total = %v, want at least 1:\n%s", failures, body)
		}
		src, err := gospiffe.NewX509Source(ctx, gospiffe.WithClientOptions(gospiffe.WithAddr(payments.addr)))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if svid, err := src.GetX509SVID(); err != nil || svid.ID != paymentsID {
			t.Errorf("during the outage: %v %v", svid, err)
		}
		if out, errOut, code := runCA(t, nil, "agent", "--socket", payments.socket, "--health"); code != 0 {
			t.Errorf("ca agent --health during the outage = %d %s %s", code, out, errOut)
		}
	})
}

func x509svidVerify(chain []*x509.Certificate, roots []*x509.Certificate) ([][]*x509.Certificate, bool, error) {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return chains, err == nil, err
}
