package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/workload-ca/workload-ca/internal/procstat"
)

// defaultPostgresAdminURL is the shared development server; the load
// generator creates and drops its own database there.
const defaultPostgresAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// options are the command-line settings.
type options struct {
	caBin       string
	outDir      string
	duration    time.Duration
	ceilingTime time.Duration
	enrollConc  []int
	conc        int
	adminURL    string
	module      string
	dbPool      int
	goBench     string
	keepDir     bool
	// backends are the server setups measured: embedded (the default:
	// SQLite and software keys) and production (Postgres and SoftHSM).
	backends []string
	// embeddedConc are the enroll concurrencies of the embedded runs;
	// overloadConc the clients of the overload run.
	embeddedConc []int
	overloadConc int
	// cpuProfile makes each server write a CPU profile of its run
	// (CA_CPU_PROFILE) next to its log in outDir.
	cpuProfile bool
	// stepCLI and stepCABin are the step and step-ca binaries of the
	// stepca backend (stepca.go).
	stepCLI, stepCABin string
	// enrollOnly runs only the enroll runs at the configured
	// concurrencies: no SoftHSM ceiling, overload, half-peak, renewal,
	// JWT-SVID, OCSP, bundle or CRL run (a side-by-side with step-ca,
	// alternated binaries, a profile of enrollment alone).
	enrollOnly bool
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "baseline-server" {
		if err := serveBaseline(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "baseline-server:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ca-load:", err)
		os.Exit(1)
	}
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("ca-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.caBin, "ca", "bin/ca", "the `ca` binary to run as the server")
	fs.StringVar(&o.outDir, "out", "bench-out", "directory for report.md, report.json and the server log")
	fs.DurationVar(&o.duration, "duration", 8*time.Second, "length of each measured scenario")
	fs.DurationVar(&o.ceilingTime, "ceiling-time", 2*time.Second, "how long the SoftHSM ceiling signs per worker count")
	conc := fs.String("enroll-concurrency", "1,4,16,32", "comma-separated concurrency levels of the production enroll runs")
	econc := fs.String("embedded-concurrency", "1,16,64", "comma-separated concurrency levels of the embedded-default enroll runs")
	backends := fs.String("backends", "embedded,production", "which setups to measure: embedded (SQLite + software keys), production (Postgres + SoftHSM), stepca (step-ca's defaults, for comparison: needs --step and --step-ca)")
	fs.StringVar(&o.stepCLI, "step", "", "the `step` CLI binary (stepca backend: step ca init)")
	fs.StringVar(&o.stepCABin, "step-ca", "", "the `step-ca` binary (stepca backend)")
	fs.IntVar(&o.overloadConc, "overload-concurrency", 256, "clients of the embedded overload run")
	fs.IntVar(&o.conc, "concurrency", 16, "concurrency of the renew, OCSP, bundle and CRL runs")
	fs.StringVar(&o.adminURL, "postgres-admin-url", envOr("CA_TEST_POSTGRES_URL", defaultPostgresAdminURL), "Postgres server (a user that may create databases)")
	fs.StringVar(&o.module, "softhsm-module", envOr("SOFTHSM2_MODULE", "/usr/lib/softhsm/libsofthsm2.so"), "SoftHSM2 PKCS#11 module")
	fs.IntVar(&o.dbPool, "db-pool", 16, "pool_max_conns of the server's Postgres pool (0: pgx default)")
	fs.StringVar(&o.goBench, "gobench", "", "output of `go test -bench` to take the component figures (CRL build) from")
	fs.BoolVar(&o.cpuProfile, "cpuprofile", false, "have each server write a CPU profile of its run to the output directory (serve.cpu.prof, serve-embedded.cpu.prof)")
	fs.BoolVar(&o.enrollOnly, "enroll-only", false, "measure only the enroll runs of each setup (no SoftHSM ceiling, overload, half-peak, renewal, JWT-SVID, OCSP, bundle or CRL run)")
	fs.BoolVar(&o.keepDir, "keep", false, "keep the temporary directory (token, policy) after the run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.enrollConc, err = parseInts("--enroll-concurrency", *conc); err != nil {
		return o, err
	}
	if o.embeddedConc, err = parseInts("--embedded-concurrency", *econc); err != nil {
		return o, err
	}
	for _, b := range strings.Split(*backends, ",") {
		switch b = strings.TrimSpace(b); b {
		case "embedded", "production", "stepca":
			o.backends = append(o.backends, b)
		default:
			return o, fmt.Errorf("--backends: %q is none of embedded, production, stepca", b)
		}
	}
	if o.duration <= 0 || o.conc < 1 || o.overloadConc < 1 {
		return o, errors.New("--duration and --concurrency must be positive")
	}
	return o, nil
}

func parseInts(flag, list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", flag, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func (o options) measures(backend string) bool {
	for _, b := range o.backends {
		if b == backend {
			return true
		}
	}
	return false
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ca-load-")
	if err != nil {
		return err
	}
	if !o.keepDir {
		defer os.RemoveAll(dir)
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "ca-load: "+format+"\n", a...) }

	rep := &report{Started: time.Now().UTC(), Duration: o.duration.String()}
	rep.fillEnvironment(ctx, o)

	ti, err := newTokenIssuer(dir)
	if err != nil {
		return err
	}
	if o.measures("embedded") {
		if err := runEmbedded(ctx, o, dir, ti, rep, logf); err != nil {
			return fmt.Errorf("embedded default: %w", err)
		}
	}
	if o.measures("production") {
		if err := runProduction(ctx, o, dir, ti, rep, logf); err != nil {
			return fmt.Errorf("production: %w", err)
		}
	}
	if o.measures("stepca") {
		if err := runStepCA(ctx, o, dir, rep, logf); err != nil {
			return fmt.Errorf("step-ca: %w", err)
		}
	}
	if o.goBench != "" {
		rep.GoBench, err = parseGoBench(o.goBench)
		if err != nil {
			return err
		}
	}
	rep.evaluate()
	if err := rep.write(o.outDir); err != nil {
		return err
	}
	rep.printTargets(stdout)
	return nil
}

// runProduction measures `ca serve` on Postgres and SoftHSM.
func runProduction(ctx context.Context, o options, dir string, ti *tokenIssuer, rep *report, logf func(string, ...any)) error {
	tok, err := newSoftHSMToken(dir, o.module)
	if err != nil {
		return err
	}
	if !o.enrollOnly {
		logf("SoftHSM ceiling (%v per worker count)", o.ceilingTime)
		if rep.Ceiling, err = measureCeiling(tok, o.ceilingTime); err != nil {
			return err
		}
		logf("SoftHSM ceiling: %.0f signatures/s", rep.Ceiling.Best)
	}

	dbURL, drop, err := benchDatabase(ctx, o.adminURL)
	if err != nil {
		return err
	}
	defer drop()
	benchDBURL := dbURL // without the server's pool setting
	if o.dbPool > 0 {
		dbURL += "&pool_max_conns=" + strconv.Itoa(o.dbPool)
		if !strings.Contains(dbURL, "?") {
			dbURL = strings.Replace(dbURL, "&", "?", 1)
		}
	}
	vars := map[string]string{
		"CA_DATABASE_URL": dbURL, "CA_PKCS11_MODULE": tok.cfg.Module, "CA_PKCS11_TOKEN": tok.cfg.TokenLabel,
		"CA_PKCS11_PIN": tok.cfg.PIN, "CA_POLICY_FILE": ti.policyPath, "CA_TRUST_DOMAIN": benchTrustDomain,
		"SOFTHSM2_CONF": tok.conf,
	}
	if out, err := runCA(ctx, o.caBin, vars, "init"); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	srv, err := startServer(ctx, o, vars, "serve")
	if err != nil {
		return err
	}
	defer srv.stop()
	logf("ca serve pid %d: api %s, public %s", srv.pid(), srv.apiURL, srv.publicURL)

	db, err := newPGProbe(ctx, benchDBURL)
	if err != nil {
		return err
	}
	defer db.close()
	b := &bench{backend: "production", o: o, srv: srv, ti: ti, rep: rep, logf: logf, db: db, metricsClient: plainClient(1)}
	return b.scenarios(ctx)
}

// bench runs the scenarios against one server.
type bench struct {
	// backend names the setup: embedded or production.
	backend string
	o       options
	srv     *serverProc
	ti      *tokenIssuer
	rep     *report
	logf    func(string, ...any)
	// db is the server's database, read for the OCSP backlog and the
	// number of recorded certificates.
	db dbProbe
	// metricsClient scrapes the server's /metrics for the breakdowns.
	metricsClient *http.Client
}

// measure runs one scenario while sampling the process pid's CPU time and
// peak RSS. For an enroll run (drain), the publisher's OCSP pre-signing of
// what it issued is waited for and counted: see drain.go.
func (b *bench) measure(ctx context.Context, name string, conc int, rate float64, pid int, drain bool, runIt func() (*recorder, time.Duration)) (result, error) {
	res := result{Scenario: name, Concurrency: conc, TargetRate: rate}
	resetOK := procstat.ResetPeakRSS(pid) == nil
	before, _ := procstat.Read(pid)
	sharesBefore := procstat.ReadShares()
	var peak int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if s, err := procstat.Read(pid); err == nil {
				peak = max(peak, s.RSSBytes)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var snapBefore histSnapshot
	recordedBefore := -1
	if drain {
		if n, err := b.db.certificates(ctx); err == nil {
			recordedBefore = n
		}
		snapBefore, _ = scrapeHistograms(b.metricsClient, b.srv.publicURL+"/metrics")
	}
	rec, elapsed := runIt()
	var drained time.Duration
	var drainErr error
	if drain {
		drained, drainErr = waitOCSPDrained(ctx, b.db, 3*time.Minute)
		if n, err := b.db.certificates(ctx); err == nil && recordedBefore >= 0 {
			res.Recorded = n - recordedBefore
		}
	}
	close(stop)
	<-done
	after, _ := procstat.Read(pid)
	shares := procstat.ReadShares().Minus(sharesBefore)
	res.ClientCPUS, res.PostgresCPUS, res.MachineCPUS = shares.Self, shares.Postgres, shares.Machine
	if resetOK {
		peak = max(peak, after.HWMBytes)
	}
	rec.fill(&res, elapsed)
	res.ServerCPUS = after.CPUSeconds - before.CPUSeconds
	res.Backend = b.backend
	if ok := len(rec.lat); ok > 0 {
		res.CPUPerReqMs = 1000 * res.ServerCPUS / float64(ok)
	}
	res.ServerPeakM = float64(peak) / (1 << 20)
	if drainErr != nil {
		return res, fmt.Errorf("%s: %w", name, drainErr)
	}
	sustained := ""
	if drain && snapBefore != nil {
		if after, err := scrapeHistograms(b.metricsClient, b.srv.publicURL+"/metrics"); err == nil {
			res.Breakdown = breakdown(snapBefore, after, res.Requests)
		}
	}
	if drain {
		res.DrainS = drained.Seconds()
		res.Sustained = float64(len(rec.lat)) / (elapsed + drained).Seconds()
		sustained = fmt.Sprintf(" (OCSP drain %.1fs: sustained %.1f/s)", res.DrainS, res.Sustained)
	}
	b.rep.Scenarios = append(b.rep.Scenarios, res)
	b.logf("%-10s %-28s c=%-3d %7.1f/s p50 %6.2f ms p99 %6.2f ms max %7.2f ms err %d shed %d cpu %.1fs = %.3f ms/req (client %.1fs, postgres %.1fs, machine %.1fs) rss %.0f MB%s %s",
		b.backend, name, conc, res.Throughput, res.P50Ms, res.P99Ms, res.MaxMs, res.Errors, res.Shed, res.ServerCPUS, res.CPUPerReqMs, res.ClientCPUS, res.PostgresCPUS, res.MachineCPUS,
		res.ServerPeakM, sustained, res.FirstError)
	return res, nil
}

// warmUp enrolls from n pre-made inputs with 16 clients for 3 s (caches,
// connection pools, certificates kept for the renew and OCSP runs), then
// waits until every certificate has its pre-signed OCSP response; it
// returns what it kept, the run's figures and the drain time.
func (b *bench) warmUp(ctx context.Context, api *http.Client, n int) (*keeper, result, time.Duration, error) {
	keep := &keeper{max: 256}
	warm, err := b.ti.enrollInputs(n)
	if err != nil {
		return nil, result{}, 0, err
	}
	rec, el := closedLoop(ctx, 16, 3*time.Second, enrollFn(api, b.srv.apiURL, warm, keep))
	var w result
	rec.fill(&w, el)
	if w.Errors > 0 || w.Throughput == 0 {
		return nil, result{}, 0, fmt.Errorf("warm-up enrollments failed (%d errors): %s", w.Errors, w.FirstError)
	}
	drained, err := waitOCSPDrained(ctx, b.db, 3*time.Minute)
	if err != nil {
		return nil, result{}, 0, fmt.Errorf("after the warm-up: %w", err)
	}
	return keep, w, drained, nil
}

func (b *bench) scenarios(ctx context.Context) error {
	o, srv := b.o, b.srv
	api := srv.apiClient(64)

	// Warm-up: fill caches and the connection pools, estimate the rate to
	// size the pre-generated inputs, and keep certificates for renew/OCSP.
	keep, w, drained, err := b.warmUp(ctx, api, 600)
	if err != nil {
		return err
	}
	b.logf("warm-up: %.0f enrollments/s, OCSP drained %.1fs later", w.Throughput, drained.Seconds())
	inputsFor := func(rate float64) int { return int(rate*o.duration.Seconds()*2.5) + 500 }

	// Enroll at each concurrency; the best is the peak.
	var peak float64
	for _, c := range o.enrollConc {
		in, err := b.ti.enrollInputs(inputsFor(max(w.Throughput, peak)))
		if err != nil {
			return err
		}
		r, err := b.measure(ctx, "enroll", c, 0, srv.pid(), true, func() (*recorder, time.Duration) {
			return closedLoop(ctx, c, o.duration, enrollFn(api, srv.apiURL, in, keep))
		})
		if err != nil {
			return err
		}
		peak = max(peak, r.Sustained)
	}
	b.rep.EnrollPeak = peak
	if o.enrollOnly {
		return nil
	}

	// Enroll at half of the peak, open loop.
	half := peak / 2
	in, err := b.ti.enrollInputs(inputsFor(half))
	if err != nil {
		return err
	}
	if _, err := b.measure(ctx, "enroll at half peak", 64, half, srv.pid(), true, func() (*recorder, time.Duration) {
		return openLoop(ctx, half, 64, o.duration, enrollFn(api, srv.apiURL, in, nil))
	}); err != nil {
		return err
	}

	// Renew over mTLS with the kept certificates.
	certs := keep.all()
	if len(certs) < o.conc {
		return fmt.Errorf("only %d certificates kept for renewal", len(certs))
	}
	csrs, err := parallelMake(inputsFor(peak), newCSR)
	if err != nil {
		return err
	}
	if _, err := b.measure(ctx, "renew (mTLS)", o.conc, 0, srv.pid(), true, func() (*recorder, time.Duration) {
		return closedLoop(ctx, o.conc, o.duration, renewFn(srv, renewers(certs[:o.conc]), &pool[csrKey]{items: csrs}))
	}); err != nil {
		return err
	}

	// OCSP from the pre-signed cache, against the net/http baseline.
	if err := b.ocsp(ctx, certs); err != nil {
		return err
	}

	// Bundle and CRL downloads.
	pub := plainClient(o.conc)
	res, err := pub.Get(srv.publicURL + "/bundle.json")
	if err != nil {
		return err
	}
	drain(res)
	etag := res.Header.Get("ETag")
	if res.StatusCode != http.StatusOK || etag == "" {
		return fmt.Errorf("/bundle.json: %d, ETag %q", res.StatusCode, etag)
	}
	b.measure(ctx, "GET /bundle.json", o.conc, 0, srv.pid(), false, func() (*recorder, time.Duration) {
		return closedLoop(ctx, o.conc, o.duration, getFn(pub, srv.publicURL+"/bundle.json", "", http.StatusOK))
	})
	b.measure(ctx, "GET /bundle.json If-None-Match", o.conc, 0, srv.pid(), false, func() (*recorder, time.Duration) {
		return closedLoop(ctx, o.conc, o.duration, getFn(pub, srv.publicURL+"/bundle.json", etag, http.StatusNotModified))
	})
	crl, err := crlURL(certs[0])
	if err != nil {
		return err
	}
	b.measure(ctx, "GET CRL", o.conc, 0, srv.pid(), false, func() (*recorder, time.Duration) {
		return closedLoop(ctx, o.conc, o.duration, getFn(pub, crl, "", http.StatusOK))
	})
	if s, err := procstat.Read(srv.pid()); err == nil {
		b.rep.ServerCPUTotal = s.CPUSeconds
	}
	return nil
}

// ocsp measures OCSP answers from the pre-signed store and the fixed 2 KB
// net/http baseline with the same requests, client and concurrency.
func (b *bench) ocsp(ctx context.Context, certs []issued) error {
	o, srv := b.o, b.srv
	reqs, err := ocspRequests(certs)
	if err != nil {
		return err
	}
	url, err := ocspURL(certs[0])
	if err != nil {
		return err
	}
	pub := plainClient(o.conc)
	// Every certificate's response is signed (by the publisher, or on first
	// request) and stored; after that pass the answers come from the store.
	if _, el := closedLoop(ctx, 1, time.Minute, ocspFn(pub, url, reqs)); el <= 0 {
		return errors.New("OCSP warm-up did not run")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		signedBy := time.Now().Add(-time.Second)
		err := ocspGoodFromCache(ctx, pub, url, reqs, certs, signedBy)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("OCSP answers not served from the pre-signed store: %w", err)
		}
		time.Sleep(time.Second)
	}
	base, err := startBaseline(ctx)
	if err != nil {
		return err
	}
	defer base.stop()
	// The baseline runs before and after ours and the target compares with
	// their mean, so a machine that speeds up or slows down during the run
	// (other work on a shared host) does not tilt the ratio either way.
	baseline := func(when string) result {
		r, _ := b.measure(ctx, "net/http fixed 2 KB (baseline, "+when+")", o.conc, 0, base.pid(), false, func() (*recorder, time.Duration) {
			return closedLoop(ctx, o.conc, o.duration, ocspFn(plainClient(o.conc), base.url+"/ocsp", reqs))
		})
		return r
	}
	before := baseline("before")
	ocspRes, _ := b.measure(ctx, "OCSP POST (pre-signed)", o.conc, 0, srv.pid(), false, func() (*recorder, time.Duration) {
		return closedLoop(ctx, o.conc, o.duration, ocspFn(pub, url, reqs))
	})
	after := baseline("after")
	bres := result{Throughput: (before.Throughput + after.Throughput) / 2}
	b.rep.OCSPThroughput, b.rep.BaselineThroughput = ocspRes.Throughput, bres.Throughput
	return nil
}
