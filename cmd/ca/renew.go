package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
)

// cmdRenew renews a workload certificate over mTLS with the current one:
// once, or with --daemon at about two thirds of each certificate's lifetime
// (counted from when it was obtained, with jitter; SIGUSR1 forces a renewal
// at once), retrying failures with exponential backoff, replacing the
// files atomically and running a reload hook after each renewal. When the
// CA answers reauthentication_required (the lineage is older than its
// rule's reauthenticate_after), it enrolls again with the token in
// --token-file if given (a token the platform keeps fresh, such as a
// projected Kubernetes service-account token); otherwise it says so and
// keeps the current certificate until it expires.
func cmdRenew(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("renew", flag.ContinueOnError)
	build := renewerFlags(fs, getenv)
	daemon := fs.Bool("daemon", false, "keep running, renewing at about 2/3 of each certificate's lifetime (SIGUSR1: renew now)")
	execCmd := fs.String("exec", "", "after each renewal, run `COMMAND` with sh -c (e.g. to reload a server)")
	sigName := fs.String("signal", "", "after each renewal, send `SIG` (HUP, USR1, USR2, TERM) to --pid")
	pid := fs.Int("pid", 0, "process to signal after each renewal")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	sig, err := parseSignal(*sigName, *pid)
	if err != nil {
		return err
	}
	r := build(stdout, stderr)
	r.exec, r.sig, r.pid = *execCmd, sig, *pid
	if *daemon {
		force, stop := forceRenewals()
		defer stop()
		r.force = force
		return r.run(ctx)
	}
	_, err = r.renewOnce(ctx)
	if isReauthentication(err) {
		r.reportReauthentication(err)
		if r.tokenFile != "" {
			_, err = r.reenroll(ctx)
		}
	}
	return err
}

// renewerFlags defines the flags `ca renew` and `ca agent` share (the CA,
// the files, the key type and lifetime, the CA's trust domain and the
// re-authentication token) and returns what builds the renewer from them
// once parsed.
func renewerFlags(fs *flag.FlagSet, getenv env) func(stdout, stderr io.Writer) *renewer {
	srv := fs.String("server", envOr(getenv, "CA_API_URL", defaultServer), "the CA's API `URL` (default $CA_API_URL or "+defaultServer+")")
	keyFile := fs.String("key", "key.pem", "the current private key; replaced by the new one")
	certFile := fs.String("cert", "cert.pem", "the current certificate; replaced by the new one")
	chainFile := fs.String("chain", "chain.pem", "the intermediates; replaced")
	bundleFile := fs.String("bundle", "bundle.pem", "the trust bundle the CA's API certificate is verified against; refreshed after each renewal")
	keyType := fs.String("key-type", "ecdsa-p256", "new key: ecdsa-p256, ecdsa-p384 or ed25519")
	ttl := fs.Duration("ttl", 0, "requested lifetime (default: the policy rule's)")
	trustDomain := fs.String("trust-domain", envOr(getenv, "CA_TRUST_DOMAIN", ""), trustDomainUsage)
	tokenFile := fs.String("token-file", "", "when the CA requires re-authentication, enroll again with the provenance token in `FILE` (re-read each time)")
	return func(stdout, stderr io.Writer) *renewer {
		return &renewer{
			server: strings.TrimSuffix(*srv, "/"), keyType: *keyType, ttl: *ttl,
			out:    outputs{key: *keyFile, cert: *certFile, chain: *chainFile, bundle: *bundleFile},
			stdout: stdout, stderr: stderr, tokenFile: *tokenFile, trustDomain: *trustDomain,
		}
	}
}

type renewer struct {
	server, keyType string
	ttl             time.Duration
	out             outputs
	exec            string
	sig             syscall.Signal
	pid             int
	stdout, stderr  io.Writer
	// trustDomain is the CA's, for its server identity ("" = from the chain).
	trustDomain string
	tokenFile   string
	// renewed, if set, is told after each renewal or re-enrollment, once
	// the new files are in place (ca agent serves them from there).
	renewed func(ctx context.Context)
	// failed, if set, is told of each failed renewal the daemon retries.
	failed func(err error)
	// force, if set, makes the daemon renew at once, one renewal per
	// value (SIGUSR1, see forceRenewals).
	force <-chan os.Signal
}

// forceRenewals makes SIGUSR1 force a renewal: a signal that arrives while
// one is already pending is folded into it. Call it before the daemon is
// announced as running: without it SIGUSR1 ends the process. The returned
// function stops the delivery.
func forceRenewals() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	return c, func() { signal.Stop(c) }
}

// isReauthentication tells whether err is the CA's 403
// reauthentication_required.
func isReauthentication(err error) bool {
	var p *problemError
	return errors.As(err, &p) && p.Reason == "reauthentication_required"
}

// reportReauthentication says what the CA asked for, and what happens now.
func (r *renewer) reportReauthentication(err error) {
	next := "keeping the current certificate until it expires; enroll again with a fresh token (ca enroll), or run ca renew with --token-file"
	if r.tokenFile != "" {
		next = "enrolling again with the token in " + r.tokenFile
	}
	fmt.Fprintf(r.stderr, "ca renew: the CA requires re-authentication (reauthentication_required): this certificate's lineage is older than its policy rule's reauthenticate_after; %s (%v)\n", next, err)
}

// reenroll enrolls again with the token in r.tokenFile, verifying the CA's
// API against the current bundle, and replaces the files as a renewal does.
func (r *renewer) reenroll(ctx context.Context) (*x509.Certificate, error) {
	raw, err := os.ReadFile(r.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return nil, fmt.Errorf("--token-file %s is empty", r.tokenFile)
	}
	roots, err := r.roots()
	if err != nil {
		return nil, err
	}
	c := tlsClientFor(roots, r.trustDomain)
	defer c.CloseIdleConnections()
	_, keyPEM, csr, err := newKeyAndCSR(r.keyType)
	if err != nil {
		return nil, err
	}
	cr, err := requestCert(ctx, c, r.server+"/v1/enroll", tok, csr, r.ttl)
	if err != nil {
		return nil, fmt.Errorf("enrolling again: %w", err)
	}
	newBundle := fetchBundle(ctx, c, r.server)
	if err := r.out.write(keyPEM, cr, newBundle); err != nil {
		return nil, err
	}
	leaf := parseCerts([]byte(cr.Certificate))
	if len(leaf) == 0 {
		return nil, errors.New("the CA's answer holds no certificate")
	}
	fmt.Fprintf(r.stdout, "enrolled again %s (token from %s): serial %s, valid until %s\n", cr.SPIFFEID, r.tokenFile, cr.Serial, cr.NotAfter.Format(time.RFC3339))
	r.hook(ctx)
	return leaf[0], nil
}

// renewOnce renews with the files as they are and returns the new leaf.
func (r *renewer) renewOnce(ctx context.Context) (*x509.Certificate, error) {
	c, err := r.mtlsClient()
	if err != nil {
		return nil, err
	}
	defer c.CloseIdleConnections()
	_, keyPEM, csr, err := newKeyAndCSR(r.keyType)
	if err != nil {
		return nil, err
	}
	cr, err := requestCert(ctx, c, r.server+"/v1/renew", "", csr, r.ttl)
	if err != nil {
		return nil, err
	}
	// Refresh the bundle over the same verified connection, so a CA
	// rotation reaches the workload; keep the old one if that fails.
	newBundle := fetchBundle(ctx, c, r.server)
	if err := r.out.write(keyPEM, cr, newBundle); err != nil {
		return nil, err
	}
	leaf := parseCerts([]byte(cr.Certificate))
	if len(leaf) == 0 {
		return nil, errors.New("the CA's answer holds no certificate")
	}
	fmt.Fprintf(r.stdout, "renewed %s: serial %s, valid until %s\n", cr.SPIFFEID, cr.Serial, cr.NotAfter.Format(time.RFC3339))
	r.hook(ctx)
	return leaf[0], nil
}

// hook runs the reload command and sends the signal; failures are reported,
// not fatal: the files are already in place.
func (r *renewer) hook(ctx context.Context) {
	if r.renewed != nil {
		r.renewed(ctx)
	}
	if r.exec != "" {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", r.exec)
		cmd.Stdout, cmd.Stderr = r.stdout, r.stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(r.stderr, "ca renew: --exec failed: %v\n", err)
		}
	}
	if r.pid > 0 {
		if err := syscall.Kill(r.pid, r.sig); err != nil {
			fmt.Fprintf(r.stderr, "ca renew: signalling %d: %v\n", r.pid, err)
		}
	}
}

// run renews at renewAt of each certificate until ctx ends. A failure is
// retried with exponential backoff (5s doubling to 5m, with jitter); once
// the certificate has expired, mTLS renewal is impossible and run returns.
// A value on r.force (SIGUSR1) ends the current wait: the daemon renews at
// once, one renewal per value, then goes back to its schedule.
func (r *renewer) run(ctx context.Context) error {
	cur, err := currentLeaf(r.out.cert)
	if err != nil {
		return err
	}
	// The certificate in the file was obtained when the file was written;
	// the CA backdates notBefore, so notBefore alone says too early.
	obtained := cur.NotBefore
	if fi, err := os.Stat(r.out.cert); err == nil {
		obtained = fi.ModTime()
	}
	backoff := 5 * time.Second
	next := renewAt(cur, obtained, time.Now(), rand.Float64())
	// reauthWait is set while the CA requires re-authentication and there
	// is no token: the wait runs to the certificate's expiry.
	var reauthWait error
	for {
		if reauthWait == nil {
			fmt.Fprintf(r.stderr, "ca renew: next renewal of serial %x at %s\n", cur.SerialNumber, next.Format(time.RFC3339))
		}
		forced, err := r.sleepUntil(ctx, next)
		if err != nil {
			return nil
		}
		if forced {
			fmt.Fprintf(r.stderr, "ca renew: SIGUSR1: renewing serial %x now\n", cur.SerialNumber)
		} else if reauthWait != nil {
			return fmt.Errorf("the certificate expired; the CA requires re-authentication: %w", reauthWait)
		}
		reauthWait = nil
		leaf, err := r.renewOnce(ctx)
		if isReauthentication(err) {
			r.reportReauthentication(err)
			if r.tokenFile == "" {
				// Renewing cannot succeed again (unless the operator forces a
				// try); keep serving the current certificate until it expires.
				reauthWait, next = err, cur.NotAfter
				continue
			}
			leaf, err = r.reenroll(ctx)
		}
		if err == nil {
			cur, backoff = leaf, 5*time.Second
			next = renewAt(cur, time.Now(), time.Now(), rand.Float64())
			continue
		}
		var p *problemError
		if errors.As(err, &p) && p.Status >= 400 && p.Status < 500 && p.Status != http.StatusTooManyRequests {
			// The CA refused for good (revoked, policy changed): retrying
			// will not help, but keep trying slowly in case policy changes.
			backoff = 5 * time.Minute
		}
		if !time.Now().Before(cur.NotAfter) {
			return fmt.Errorf("the certificate expired before it could be renewed: %w", err)
		}
		if r.failed != nil {
			r.failed(err)
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		fmt.Fprintf(r.stderr, "ca renew: renewal failed, retrying in %s: %v\n", wait.Round(time.Second), err)
		next = time.Now().Add(wait)
		backoff = min(backoff*2, 5*time.Minute)
	}
}

// sleepUntil waits until t, ctx's end (its error) or a value on r.force
// (forced is true).
func (r *renewer) sleepUntil(ctx context.Context, t time.Time) (forced bool, err error) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-timer.C:
		return false, nil
	case <-r.force:
		return true, nil
	}
}

// renewAt is two thirds into the certificate's lifetime as the workload
// sees it, from when it was obtained (the CA backdates notBefore, so a
// certificate counts from max(notBefore, obtained); an obtained time past
// notAfter is not believed) to notAfter, moved by
// up to ±5% of that lifetime (jitter in [0,1)), so a fleet started together
// does not renew together; never in the past.
func renewAt(c *x509.Certificate, obtained, now time.Time, jitter float64) time.Time {
	start := c.NotBefore
	if obtained.After(start) && obtained.Before(c.NotAfter) {
		start = obtained
	}
	life := c.NotAfter.Sub(start)
	at := start.Add(life * 2 / 3).Add(time.Duration((jitter - 0.5) * 0.1 * float64(life)))
	if at.Before(now) {
		return now
	}
	return at
}

func currentLeaf(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs := parseCerts(raw)
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no certificate", path)
	}
	return certs[0], nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	return clock.Sleep(ctx, time.Until(t))
}

func fetchBundle(ctx context.Context, c *http.Client, server string) []byte {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/bundle.pem", nil)
	if err != nil {
		return nil
	}
	res, err := c.Do(req)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil || res.StatusCode != http.StatusOK || len(parseCerts(b)) == 0 {
		return nil
	}
	return b
}

func parseSignal(name string, pid int) (syscall.Signal, error) {
	if name == "" && pid == 0 {
		return 0, nil
	}
	if name == "" || pid <= 0 {
		return 0, fmt.Errorf("%w: --signal and --pid go together", errUsage)
	}
	switch strings.TrimPrefix(strings.ToUpper(name), "SIG") {
	case "HUP":
		return syscall.SIGHUP, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	case "USR2":
		return syscall.SIGUSR2, nil
	case "TERM":
		return syscall.SIGTERM, nil
	}
	return 0, fmt.Errorf("%w: --signal must be HUP, USR1, USR2 or TERM", errUsage)
}
