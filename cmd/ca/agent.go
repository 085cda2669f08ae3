package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	gospiffe "github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/mtls"
	"github.com/workload-ca/workload-ca/pkg/workloadapi"
)

// cmdAgent runs `ca agent --socket PATH`: it keeps the workload's
// certificate renewed exactly as `ca renew --daemon` does (the same loop,
// flags and files) and serves the SPIFFE Workload API on PATH from those
// files and from the CA's /bundle.json (refreshed on its refresh hint and
// after every renewal), and Envoy's SDS on the same socket. SIGUSR1 forces
// a renewal at once. With --health it asks a running agent on PATH instead
// and exits 0 while it serves a valid SVID.
func cmdAgent(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("agent", flag.ContinueOnError)
	build := renewerFlags(fset, getenv)
	socket := fset.String("socket", "", "serve the SPIFFE Workload API on the unix socket `PATH` (required)")
	group := fset.String("socket-group", "", "make the socket mode 0660 and owned by `GROUP` (name or gid); default mode 0600")
	var allowUID, allowGID stringsFlag
	fset.Var(&allowUID, "allow-uid", "admit only callers with this `UID` (unix peer credentials; repeatable)")
	fset.Var(&allowGID, "allow-gid", "admit only callers with this `GID` (unix peer credentials; repeatable)")
	metricsAddr := fset.String("metrics-addr", "", "serve Prometheus /metrics (renewal failures, SVID expiry) on `ADDR`, e.g. 127.0.0.1:9102")
	health := fset.Bool("health", false, "check the agent serving on --socket: exit 0 while it serves a valid SVID, 1 otherwise")
	if err := parseFlagsOnly(fset, args, stderr); err != nil {
		return err
	}
	if *socket == "" {
		return fmt.Errorf("%w: --socket is required", errUsage)
	}
	if *health {
		return agentHealth(ctx, *socket, stdout)
	}
	// SIGUSR1 forces a renewal (as for ca renew --daemon); registered before
	// the socket exists, so a signal never finds the agent unprepared.
	force, stopForce := forceRenewals()
	defer stopForce()
	uids, err := parseIDs(allowUID, "--allow-uid")
	if err != nil {
		return err
	}
	gids, err := parseIDs(allowGID, "--allow-gid")
	if err != nil {
		return err
	}
	gid := -1
	if *group != "" {
		if gid, err = lookupGroup(*group); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	r := build(stdout, stderr)
	r.force = force
	if _, err := os.Stat(r.out.cert); errors.Is(err, fs.ErrNotExist) {
		if r.tokenFile == "" {
			return fmt.Errorf("%w: no certificate at %s: enroll first (ca enroll) or give --token-file", errUsage, r.out.cert)
		}
		if _, err := r.reenroll(ctx); err != nil {
			return fmt.Errorf("first enrollment: %w", err)
		}
	}
	reg := newMetricsRegistry()
	a := &agent{r: r, log: log, metrics: newAgentMetrics(reg)}
	if *metricsAddr != "" {
		if err := serveAgentMetrics(ctx, *metricsAddr, reg, log); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	a.srv = workloadapi.New(workloadapi.Config{Minter: a, AllowUIDs: uids, AllowGIDs: gids, Log: log})
	a.srv.RegisterSDS()
	if err := a.loadSVID(); err != nil {
		return err
	}
	a.startBundle(ctx)
	l, err := workloadapi.Listen(*socket, gid)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- a.srv.Serve(l) }()
	log.Info("ca agent: serving the SPIFFE Workload API and Envoy SDS", "socket", *socket, "spiffe_id", a.id.String())
	r.renewed = func(ctx context.Context) {
		a.metrics.renewals.Inc()
		if err := a.loadSVID(); err != nil {
			log.Error("ca agent: loading the renewed certificate", "err", err)
		}
		a.refreshBundle(ctx)
	}
	r.failed = func(err error) {
		n := a.failures.Add(1)
		a.metrics.renewalFailures.Inc()
		log.Warn("ca agent: renewal failed; serving the last good SVID and bundle until they expire",
			"err", err, "renewal_failures", n, "not_after", a.notAfter().Format(time.RFC3339))
	}
	bundleDone := make(chan struct{})
	bctx, cancel := context.WithCancel(ctx)
	go func() { defer close(bundleDone); a.bundleLoop(bctx) }()
	err = r.run(ctx)
	cancel()
	<-bundleDone
	a.srv.Stop()
	<-served
	log.Info("ca agent: stopped", "err", err)
	return err
}

// agent glues the renewer to the Workload API server: it loads renewed
// files into the server, keeps the bundle fresh and mints JWT-SVIDs.
type agent struct {
	r        *renewer
	log      *slog.Logger
	srv      *workloadapi.Server
	failures atomic.Int64
	metrics  *agentMetrics

	mu     sync.Mutex
	id     spiffeid.ID
	leaf   *x509.Certificate
	bundle *mtls.HTTPBundle // nil until /bundle.json was fetched once
}

// loadSVID reads the certificate, chain and key files into the server.
func (a *agent) loadSVID() error {
	pair, err := tls.LoadX509KeyPair(a.r.out.cert, a.r.out.key)
	if err != nil {
		return fmt.Errorf("loading the key and certificate: %w", err)
	}
	chain := parseDER(pair.Certificate)
	if len(chain) == 0 || len(chain[0].URIs) != 1 {
		return fmt.Errorf("%s holds no X.509-SVID", a.r.out.cert)
	}
	if raw, err := os.ReadFile(a.r.out.chain); err == nil {
		chain = append(chain, parseCerts(raw)...)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return errors.New("the private key cannot sign")
	}
	if err := a.srv.SetX509SVID(chain, signer); err != nil {
		return err
	}
	id, err := spiffeid.FromURI(chain[0].URIs[0])
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.id, a.leaf = id, chain[0]
	a.mu.Unlock()
	a.metrics.svidExpiry.Set(float64(chain[0].NotAfter.Unix()))
	return nil
}

func parseDER(ders [][]byte) []*x509.Certificate {
	var out []*x509.Certificate
	for _, d := range ders {
		if c, err := x509.ParseCertificate(d); err == nil {
			out = append(out, c)
		}
	}
	return out
}

func (a *agent) notAfter() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.leaf.NotAfter
}

// startBundle fetches /bundle.json once; if the CA is unreachable it starts
// from the bundle file (X.509 authorities only) and bundleLoop retries.
func (a *agent) startBundle(ctx context.Context) {
	if a.fetchBundle(ctx) {
		return
	}
	b, err := mtls.LoadBundleFile(a.id.TrustDomain(), a.r.out.bundle)
	if err != nil {
		a.log.Error("ca agent: no trust bundle yet (the CA is unreachable and the bundle file does not load); calls answer Unavailable", "err", err)
		return
	}
	a.log.Warn("ca agent: the CA's /bundle.json is unreachable; serving the bundle file until it answers", "bundle", a.r.out.bundle)
	a.srv.SetBundle(b)
}

// fetchBundle creates the HTTPBundle if there is none yet; it reports
// whether one exists now.
func (a *agent) fetchBundle(ctx context.Context) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bundle != nil {
		return true
	}
	hb, err := mtls.NewHTTPBundle(ctx, mtls.HTTPBundleConfig{
		URL: a.r.server + "/bundle.json", TrustDomain: a.id.TrustDomain(),
		HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: bundleFileTransport{r: a.r}},
		Log:        a.log,
	})
	if err != nil {
		a.log.Warn("ca agent: fetching the CA's /bundle.json failed", "err", err)
		return false
	}
	a.bundle = hb
	a.publishBundle(hb)
	return true
}

// publishBundle hands the current bundle to the server; a change is logged.
func (a *agent) publishBundle(hb *mtls.HTTPBundle) {
	b, _ := hb.Current()
	if a.srv.SetBundle(b) {
		seq, _ := b.SequenceNumber()
		a.log.Info("ca agent: trust bundle updated", "sequence", seq, "x509_authorities", len(b.X509Authorities()), "jwt_authorities", len(b.JWTAuthorities()))
	}
}

// refreshBundle fetches /bundle.json now (after a renewal, so a rotation
// reaches the workload at once).
func (a *agent) refreshBundle(ctx context.Context) {
	if !a.fetchBundle(ctx) {
		return
	}
	a.mu.Lock()
	hb := a.bundle
	a.mu.Unlock()
	if err := hb.Refresh(ctx); err != nil {
		a.log.Warn("ca agent: refreshing the trust bundle failed; serving the last good one", "err", err)
	}
	a.publishBundle(hb)
}

// bundleLoop refreshes the bundle on its refresh hint until ctx ends.
func (a *agent) bundleLoop(ctx context.Context) {
	for {
		next := time.Now().Add(30 * time.Second) // retry while there is no bundle yet
		a.mu.Lock()
		hb := a.bundle
		a.mu.Unlock()
		if hb != nil {
			_, next = hb.Current()
		}
		if sleepUntil(ctx, next) != nil {
			return
		}
		a.refreshBundle(ctx)
	}
}

// MintJWT asks the CA for a JWT-SVID with the current certificate.
func (a *agent) MintJWT(ctx context.Context, audience []string) (string, error) {
	c, err := a.r.mtlsClient()
	if err != nil {
		return "", err
	}
	defer c.CloseIdleConnections()
	res, _, err := requestJWT(ctx, c, a.r.server+"/v1/jwt", audience, 0)
	var p *problemError
	if errors.As(err, &p) && p.Status >= 400 && p.Status < 500 && p.Status != http.StatusTooManyRequests {
		return "", fmt.Errorf("%w: %v", workloadapi.ErrRefused, err)
	}
	if err != nil {
		return "", err
	}
	return res.Token, nil
}

// mtlsClient is an HTTPS client to the CA that presents the current
// certificate and verifies the CA against the current bundle file.
func (r *renewer) mtlsClient() (*http.Client, error) {
	pair, err := tls.LoadX509KeyPair(r.out.cert, r.out.key)
	if err != nil {
		return nil, fmt.Errorf("loading the current key and certificate: %w", err)
	}
	if chain, err := os.ReadFile(r.out.chain); err == nil {
		for _, c := range parseCerts(chain) {
			pair.Certificate = append(pair.Certificate, c.Raw)
		}
	}
	roots, err := r.roots()
	if err != nil {
		return nil, err
	}
	return tlsClientFor(roots, r.trustDomain, pair), nil
}

func (r *renewer) roots() (*x509.CertPool, error) {
	bundle, err := os.ReadFile(r.out.bundle)
	if err != nil {
		return nil, fmt.Errorf("reading the trust bundle: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return nil, fmt.Errorf("%s holds no certificate", r.out.bundle)
	}
	return roots, nil
}

// bundleFileTransport verifies the CA's API against the bundle file as it
// is at each request (renewals refresh it, so a CA rotation is followed).
type bundleFileTransport struct{ r *renewer }

func (t bundleFileTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	roots, err := t.r.roots()
	if err != nil {
		return nil, err
	}
	tr := tlsClientFor(roots, t.r.trustDomain).Transport.(*http.Transport)
	tr.DisableKeepAlives = true
	return tr.RoundTrip(req)
}

// agentHealth asks the agent on socket for its SVID, as a workload would.
func agentHealth(ctx context.Context, socket string, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	svid, err := gospiffe.FetchX509SVID(ctx, gospiffe.WithAddr("unix://"+socket))
	if err != nil {
		return fmt.Errorf("the agent on %s serves no SVID: %w", socket, err)
	}
	leaf := svid.Certificates[0]
	now := time.Now()
	if !now.Before(leaf.NotAfter) {
		return fmt.Errorf("the agent on %s serves an expired SVID (%s, expired %s)", socket, svid.ID, leaf.NotAfter.Format(time.RFC3339))
	}
	if renewalOverdue(leaf, now) {
		fmt.Fprintf(stdout, "degraded: %s, serial %x, valid until %s: renewal is overdue (the CA may be unreachable); serving the last good SVID\n",
			svid.ID, leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(stdout, "ok: %s, serial %x, valid until %s\n", svid.ID, leaf.SerialNumber, leaf.NotAfter.Format(time.RFC3339))
	return nil
}

// renewalOverdue tells whether the agent should have renewed leaf by now:
// it renews at 2/3 (±5%) of the lifetime counted from when it obtained the
// certificate, so past 3/4 the renewals are failing (CA outage). A client
// of the socket does not know when that was; the CA backdates notBefore
// (issuer.DefaultBackdate unless configured otherwise), so it counts from
// notBefore plus that backdate when that leaves a lifetime.
func renewalOverdue(leaf *x509.Certificate, now time.Time) bool {
	start := leaf.NotBefore
	if s := start.Add(issuer.DefaultBackdate); s.Before(leaf.NotAfter) {
		start = s
	}
	return now.After(start.Add(leaf.NotAfter.Sub(start) * 3 / 4))
}

func parseIDs(vals []string, flagName string) ([]uint32, error) {
	var out []uint32
	for _, v := range vals {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %q is not a number", errUsage, flagName, v)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// lookupGroup resolves a group name or numeric gid.
func lookupGroup(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("%w: --socket-group: %v", errUsage, err)
	}
	return strconv.Atoi(g.Gid)
}
