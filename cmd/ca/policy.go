package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/config"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/policy"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// Audit actions and reasons of policy changes.
const (
	actionPolicyLoad   = "policy_load"
	actionPolicyReload = "policy_reload"
	reasonPolicyBad    = "policy_invalid"
)

// errPolicyTrustDomain is returned when a policy's trust domain is not the
// CA's: the issuer would refuse every identity the policy grants.
var errPolicyTrustDomain = errors.New("policy trust_domain differs from the CA's trust_domain")

// auditAppender is the part of the store that records policy changes.
type auditAppender interface {
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

// policySetup is the loaded policy and where it came from.
type policySetup struct {
	holder *policy.Holder
	// path is the file SIGHUP reloads; "" when there is none (production
	// without policy_file: the built-in deny-all policy).
	path string
	// dev is true when the path is the generated development policy.
	dev bool
}

// loadPolicy loads policy_file (CA_POLICY_FILE). With none configured, a
// development setup writes (once) and loads the development policy in the
// data directory, with its local dev token issuer; production starts with a
// policy that trusts no token issuer, so every enrollment is denied, and says
// so. The development policy is never written in production mode.
func loadPolicy(cfg *config.Config, log *slog.Logger, stderr io.Writer) (*policySetup, error) {
	ps := &policySetup{path: cfg.PolicyFile}
	switch {
	case ps.path != "":
	case cfg.DevelopmentMode():
		dev, created, err := ensureDevSetup(cfg)
		if err != nil {
			return nil, fmt.Errorf("development policy: %w", err)
		}
		ps.path, ps.dev = dev.policyPath, true
		if created {
			msg := "development policy written to " + dev.policyPath + ": tokens from `ca dev-token --sub NAME` enroll as spiffe://" +
				cfg.TrustDomain + "/dev/NAME; set CA_POLICY_FILE for a real policy"
			log.Warn(msg, "policy_file", dev.policyPath)
			fmt.Fprintln(stderr, "NOTE: "+msg)
		}
	default:
		p, err := policy.Parse([]byte("trust_domain: " + cfg.TrustDomain + "\n"))
		if err != nil {
			return nil, fmt.Errorf("built-in empty policy: %w", err)
		}
		log.Warn("no policy_file (CA_POLICY_FILE) configured: no token issuer is trusted and every enrollment is denied",
			"policy_version", p.Version())
		ps.holder = policy.NewHolder(p)
		return ps, nil
	}
	p, err := policy.LoadFile(ps.path)
	if err != nil {
		return nil, fmt.Errorf("policy_file: %w", err)
	}
	if err := checkPolicyTrustDomain(p, cfg.TrustDomain); err != nil {
		return nil, fmt.Errorf("policy_file %s: %w", ps.path, err)
	}
	if err := checkPolicyReservedNames(p, cfg); err != nil {
		return nil, fmt.Errorf("policy_file %s: %w", ps.path, err)
	}
	ps.holder = policy.NewHolder(p)
	log.Info("policy loaded", "policy_file", ps.path, "policy_version", p.Version(), "development", ps.dev,
		"token_issuers", len(p.TokenIssuers()))
	return ps, nil
}

func checkPolicyTrustDomain(p *policy.Policy, td string) error {
	if p.TrustDomain() != td {
		return fmt.Errorf("%w: the policy says %q, the CA is configured for %q (trust_domain / CA_TRUST_DOMAIN)",
			errPolicyTrustDomain, p.TrustDomain(), td)
	}
	return nil
}

// checkPolicyReservedNames refuses a policy whose rules grant one of the
// CA's own host names as a literal dns_names entry (spiffe_id templates under
// /ca/ are refused by the policy parser itself).
func checkPolicyReservedNames(p *policy.Policy, cfg *config.Config) error {
	names, _ := cfg.CAHostNames()
	return p.CheckReservedDNSNames(names)
}

// policyReloader reloads the policy file on SIGHUP and records every outcome
// in the audit log. A file that does not load, does not compile, or names
// another trust domain is refused and the current policy stays.
type policyReloader struct {
	setup       *policySetup
	trustDomain string
	// caHosts are the CA's own host names (config.CAHostNames): a policy
	// whose rules grant one is refused.
	caHosts []string
	audit   auditAppender
	clock   clock.Clock
	log     *slog.Logger

	mu sync.Mutex // one reload at a time
}

// reload re-reads the policy file. It returns the error that refused the new
// file, or nil when the new policy is installed (or there is no file).
func (r *policyReloader) reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.setup.path == "" {
		r.log.Warn("SIGHUP: no policy_file configured, nothing to reload")
		return nil
	}
	old := r.setup.holder.Load()
	p, err := policy.LoadFile(r.setup.path)
	if err == nil {
		err = checkPolicyTrustDomain(p, r.trustDomain)
	}
	if err == nil {
		err = p.CheckReservedDNSNames(r.caHosts)
	}
	if err != nil {
		r.log.Error("policy reload refused; the current policy stays", "policy_file", r.setup.path,
			"policy_version", old.Version(), "err", err)
		r.record(ctx, store.AuditEntry{
			Action: actionPolicyReload, Decision: "deny", Reason: reasonPolicyBad, PolicyVersion: old.Version(),
		}, map[string]string{"policy_file": r.setup.path, "kept_version": old.Version(), "error": truncate(err.Error(), 500)})
		return err
	}
	r.setup.holder.Swap(p)
	r.log.Info("policy reloaded", "policy_file", r.setup.path, "old_version", old.Version(), "policy_version", p.Version())
	r.record(ctx, store.AuditEntry{Action: actionPolicyReload, Decision: "allow", PolicyVersion: p.Version()},
		map[string]string{"policy_file": r.setup.path, "old_version": old.Version(), "new_version": p.Version()})
	return nil
}

// recordLoad audits the policy `ca serve` starts with.
func (r *policyReloader) recordLoad(ctx context.Context) {
	p := r.setup.holder.Load()
	r.record(ctx, store.AuditEntry{Action: actionPolicyLoad, Decision: "allow", PolicyVersion: p.Version()},
		map[string]string{"policy_file": r.setup.path, "version": p.Version()})
}

func (r *policyReloader) record(ctx context.Context, e store.AuditEntry, details map[string]string) {
	recordPolicyChange(ctx, r.audit, r.clock, r.log, "policy", "the policy change", e, details)
}

// run reloads on every value from hup until ctx ends.
func (r *policyReloader) run(ctx context.Context, hup <-chan os.Signal) {
	reloadOnHUP(ctx, hup, r.reload)
}

// recordPolicyChange appends the audit entry of a policy file's load or
// reload (the enrollment policy's or the authorization policy's), by "ca
// serve" on target, with details; a failure is logged, not returned.
func recordPolicyChange(ctx context.Context, audit auditAppender, clk clock.Clock, log *slog.Logger, target, what string, e store.AuditEntry, details map[string]string) {
	e.Time = clk.Now()
	e.Actor = "ca serve"
	e.Target = target
	e.Details, _ = json.Marshal(details)
	if _, err := audit.AppendAudit(ctx, e); err != nil {
		log.Error("recording "+what+" in the audit log failed", "action", e.Action, "err", err)
	}
}

// reloadOnHUP calls reload on every value from hup until ctx ends (a
// refused reload has already been logged and audited by reload).
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, reload func(context.Context) error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = reload(ctx)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

var policyCases = caseSuite{
	usage:   "ca policy test POLICY.yaml --cases CASES.yaml",
	subject: "policy",
	noun:    "policy test cases",
}

// cmdPolicy runs `ca policy test FILE --cases CASES`: the policy's offline
// test cases, no network, token or database. Exit 1 on any failure.
func cmdPolicy(args []string, getenv env, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		return fmt.Errorf("%w: %s", errUsage, policyCases.usage)
	}
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	cases := fs.String("cases", "", "the test cases `FILE` (YAML: cases: [{name, issuer, claims, expect}])")
	cfgPath := commonFlags(fs)
	var caHosts stringsFlag
	fs.Var(&caHosts, "ca-host", "a `NAME` of the CA's own (repeat for more) that no rule may grant; default: the host names of the configuration ($CA_CONFIG, $CA_API_URL, $CA_PUBLIC_URL, listen addresses, localhost)")
	file, err := policyCases.parseArgs(fs, cases, args[1:], stderr)
	if err != nil {
		return err
	}
	p, err := policy.LoadFile(file)
	if err != nil {
		return err
	}
	if len(caHosts) == 0 {
		cfg, err := loadConfig(*cfgPath, getenv)
		if err != nil {
			return fmt.Errorf("%w (the CA's host names come from the configuration; name them with --ca-host instead)", err)
		}
		caHosts, _ = cfg.CAHostNames()
	}
	if err := p.CheckReservedDNSNames(caHosts); err != nil {
		return fmt.Errorf("policy %s: %w", file, err)
	}
	run := func(tcs []policy.TestCase) []policy.Result { return policy.RunTests(p, tcs) }
	passed := func(r policy.Result) bool { return r.Passed }
	return runCases(policyCases, stdout, file, p.Version(), *cases, policy.ParseTestCases, run, passed)
}

// tokenIssuerRoots is the system roots plus enroll.token_issuer_ca_file, or
// nil when that is not set (the system roots alone).
func tokenIssuerRoots(cfg *config.Config) (*x509.CertPool, error) {
	f := cfg.Enroll.TokenIssuerCAFile
	if f == "" {
		return nil, nil
	}
	pemBytes, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("enroll.token_issuer_ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("enroll.token_issuer_ca_file %s: no PEM certificates", f)
	}
	return pool, nil
}

// newVerifier builds the token verifier: extra CA certificates from
// enroll.token_issuer_ca_file for fetching token issuers' keys, and the
// configured JWKS refresh bound.
func newVerifier(cfg *config.Config, log *slog.Logger) (*enroll.Verifier, error) {
	opts := []enroll.VerifierOption{
		enroll.WithLogger(log),
		enroll.WithLimits(enroll.Limits{JWKSMinRefreshInterval: cfg.Enroll.JWKSMinRefreshInterval}),
	}
	pool, err := tokenIssuerRoots(cfg)
	if err != nil {
		return nil, err
	}
	if pool != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		opts = append(opts, enroll.WithHTTPClient(&http.Client{Transport: tr, Timeout: enroll.DefaultLimits().FetchTimeout}))
	}
	return enroll.NewVerifier(clock.Real{}, opts...), nil
}
