package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/workload-ca/workload-ca/pkg/authz"
)

const authzUsage = "ca authz check --policy F --source ID --service S --method M --path P | test POLICY --cases CASES | explain --policy F [--service S] [--source ID]"

// errAuthzDenied is the outcome of `ca authz check` for a call the policy
// does not allow (deny, or would_deny in observe mode): exit 1.
var errAuthzDenied = errors.New("not allowed")

// cmdAuthz runs the offline service-to-service authorization tools: no
// network, CA or database; only the policy file.
func cmdAuthz(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, authzUsage)
	}
	switch args[0] {
	case "check":
		return cmdAuthzCheck(args[1:], stdout, stderr)
	case "test":
		return cmdAuthzTest(args[1:], stdout, stderr)
	case "explain":
		return cmdAuthzExplain(args[1:], stdout, stderr)
	default:
		return fmt.Errorf("%w: unknown subcommand %q: %s", errUsage, args[0], authzUsage)
	}
}

// loadAuthzPolicy reads and compiles an authorization policy file.
func loadAuthzPolicy(path string) (*authz.Policy, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("authz policy: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, authz.MaxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("authz policy %s: %w", path, err)
	}
	p, err := authz.ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// cmdAuthzCheck prints one decision. Exit 0 when the call is allowed, 1 when
// it is denied or would be denied (observe mode).
func cmdAuthzCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("authz check", flag.ContinueOnError)
	pol := fs.String("policy", "", "the authorization policy `FILE`")
	source := fs.String("source", "", "the caller's SPIFFE `ID` (empty: no verified identity)")
	service := fs.String("service", "", "the destination service `NAME`")
	method := fs.String("method", "GET", "the HTTP `METHOD`")
	path := fs.String("path", "", "the request `PATH` as sent (percent-encoded, no query)")
	at := fs.String("time", "", "request.time for conditions, RFC 3339 (default now)")
	var headers stringsFlag
	fs.Var(&headers, "header", "a request header `NAME=VALUE` for conditions (repeat for more)")
	asJSON := fs.Bool("json", false, "print the decision as JSON (as POST /v1/authz/decide answers)")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	if *pol == "" || *service == "" || *path == "" {
		return fmt.Errorf("%w: ca authz check --policy F --source ID --service S --method M --path P", errUsage)
	}
	p, err := loadAuthzPolicy(*pol)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	if *at != "" {
		if now, err = time.Parse(time.RFC3339, *at); err != nil {
			return fmt.Errorf("%w: --time: %v", errUsage, err)
		}
	}
	hdr := http.Header{}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return fmt.Errorf("%w: --header %q: want NAME=VALUE", errUsage, h)
		}
		hdr.Add(k, v)
	}
	d := p.Decide(authz.Request{Source: *source, Service: *service, Method: *method, Path: *path, Header: hdr, Time: now}, nil)
	if *asJSON {
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "decision=%s reason=%s endpoint=%s mode=%s policy_version=%s\n", d.Decision, d.Reason, orDash(d.Endpoint), d.Mode, d.PolicyVersion)
	}
	if d.Decision != authz.DecisionAllow {
		return fmt.Errorf("%w: %s (%s)", errAuthzDenied, d.Decision, d.Reason)
	}
	return nil
}

var authzCases = caseSuite{
	usage:   "ca authz test POLICY.yaml --cases CASES.yaml",
	subject: "authz policy",
	noun:    "authz test cases",
}

// cmdAuthzTest runs a policy's offline test cases. Exit 1 on any failure.
func cmdAuthzTest(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("authz test", flag.ContinueOnError)
	cases := fs.String("cases", "", "the test cases `FILE` (YAML: cases: [{name, source, service, method, path, expect}])")
	file, err := authzCases.parseArgs(fs, cases, args, stderr)
	if err != nil {
		return err
	}
	p, err := loadAuthzPolicy(file)
	if err != nil {
		return err
	}
	run := func(tcs []authz.TestCase) []authz.CaseResult { return authz.RunTests(p, tcs) }
	passed := func(r authz.CaseResult) bool { return r.Passed }
	return runCases(authzCases, stdout, file, p.Version(), *cases, authz.ParseTestCases, run, passed)
}

// cmdAuthzExplain prints who may call what, one endpoint per line.
func cmdAuthzExplain(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("authz explain", flag.ContinueOnError)
	pol := fs.String("policy", "", "the authorization policy `FILE`")
	service := fs.String("service", "", "only this destination service `NAME`")
	source := fs.String("source", "", "only endpoints this caller's SPIFFE `ID` is allowed to call")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	if *pol == "" {
		return fmt.Errorf("%w: ca authz explain --policy F [--service S] [--source ID]", errUsage)
	}
	p, err := loadAuthzPolicy(*pol)
	if err != nil {
		return err
	}
	if *service != "" {
		if _, ok := p.Describe(*service); !ok {
			return fmt.Errorf("%w: no service %q in the policy (services: %s)", errUsage, *service, strings.Join(p.Services(), ", "))
		}
	}
	rows := p.Explain(*service, *source)
	fmt.Fprintf(stdout, "authz policy %s (version %s), trust domain %s\n", *pol, p.Version()[:12], p.TrustDomain())
	if len(rows) == 0 {
		fmt.Fprintln(stdout, "no endpoint matches: nothing is allowed")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tENDPOINT\tMETHODS\tPATHS\tWHO MAY CALL\tMODE\tCONDITION")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Service, r.Endpoint, r.Methods, r.Paths, r.Callers, r.Mode, orDash(r.Condition))
	}
	return tw.Flush()
}
