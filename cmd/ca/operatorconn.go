package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// connFlags registers the flags every operator client command (ca revoke,
// ca identity, ca authz overrides) shares: where the CA is, how the operator
// authenticates, how the CA's API is verified, and --json.
func (o *revokeOptions) connFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.caURL, "server", "", "the CA's API `URL`, https://host:port (required)")
	fs.StringVar(&o.tokenFile, "token-file", "", `file holding an operator bearer token ("-" reads stdin)`)
	fs.StringVar(&o.clientCert, "client-cert", "", "PEM client certificate (and chain) for mTLS")
	fs.StringVar(&o.clientKey, "client-key", "", "PEM private key of --client-cert")
	fs.StringVar(&o.caBundle, "ca-bundle", "", "PEM file of the CA roots to verify the API with")
	fs.StringVar(&o.caFingerprint, "ca-fingerprint", "", "SHA-256 fingerprint of the CA root to verify the API with")
	fs.StringVar(&o.trustDomain, "trust-domain", "", trustDomainUsage)
	fs.BoolVar(&o.json, "json", false, "print the CA's JSON answer")
}

// operatorVerb splits `NAME VERB ...` (name such as "ca identity") into the
// verb, one of verbs, and its arguments, and returns the verb's flag set,
// whose -h prints usage. -h before the verb prints usage (errFlagHelp); no
// verb or an unknown one is errUsage.
func operatorVerb(name, usage string, args []string, stderr io.Writer, verbs ...string) (verb string, rest []string, fs *flag.FlagSet, err error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprint(stderr, usage)
			return "", nil, nil, errFlagHelp
		}
		return "", nil, nil, fmt.Errorf("%w: %s %s", errUsage, name, strings.Join(verbs, " | "))
	}
	verb, rest = args[0], args[1:]
	if !slices.Contains(verbs, verb) {
		return "", nil, nil, fmt.Errorf("%w: unknown %s command %q (%s)", errUsage, name, verb, strings.Join(verbs, ", "))
	}
	fs = flag.NewFlagSet(strings.TrimPrefix(name, "ca ")+" "+verb, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return verb, rest, fs, nil
}

// parseVerbArgs registers the connection flags on fs and parses a verb's
// arguments: arg is the one before the flags or, when takesArg, the first
// after them; rest is what remains after the flags.
func (o *revokeOptions) parseVerbArgs(fs *flag.FlagSet, args []string, stderr io.Writer, takesArg bool) (arg string, rest []string, err error) {
	o.connFlags(fs)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		arg, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return "", nil, err
	}
	rest = fs.Args()
	if arg == "" && len(rest) > 0 && takesArg {
		arg, rest = rest[0], rest[1:]
	}
	return arg, rest, nil
}

// call connects to the CA's API with the operator's credentials and makes
// one call (operatorCall) to path; with --json it prints the answer as it is
// and printed is true.
func (o revokeOptions) call(ctx context.Context, stdin io.Reader, stdout io.Writer, method, path string, body any, want ...int) (raw []byte, printed bool, err error) {
	client, token, err := operatorClient(ctx, o, stdin)
	if err != nil {
		return nil, false, err
	}
	defer client.CloseIdleConnections()
	raw, err = operatorCall(ctx, client, method, o.caURL+path, token, body, want...)
	if err != nil || !o.json {
		return raw, false, err
	}
	_, err = fmt.Fprintln(stdout, strings.TrimSpace(string(raw)))
	return raw, true, err
}

// checkConn validates the shared flags (errUsage) and trims the server URL.
func (o *revokeOptions) checkConn() error {
	switch {
	case o.caURL == "":
		return fmt.Errorf("%w: --server is required", errUsage)
	case (o.tokenFile == "") == (o.clientCert == "" && o.clientKey == ""):
		return fmt.Errorf("%w: give either --token-file or --client-cert with --client-key", errUsage)
	case (o.clientCert == "") != (o.clientKey == ""):
		return fmt.Errorf("%w: --client-cert and --client-key go together", errUsage)
	case (o.caBundle == "") == (o.caFingerprint == ""):
		return fmt.Errorf("%w: give either --ca-bundle or --ca-fingerprint", errUsage)
	}
	u, err := url.Parse(o.caURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("%w: --server must be https://host[:port]", errUsage)
	}
	o.caURL = strings.TrimSuffix(o.caURL, "/")
	return nil
}

// operatorClient loads the operator's credentials (a client certificate,
// or a bearer token from --token-file) and returns an HTTP client that
// verifies the CA's API listener against the given roots and requires its
// server identity, spiffe://<td>/ca/server. token is "" with a client
// certificate. The caller closes the client's idle connections.
func operatorClient(ctx context.Context, o revokeOptions, stdin io.Reader) (client *http.Client, token string, err error) {
	var certs []tls.Certificate
	if o.clientCert != "" {
		kp, err := tls.LoadX509KeyPair(o.clientCert, o.clientKey)
		if err != nil {
			return nil, "", fmt.Errorf("%w: loading the client certificate: %v", errUsage, err)
		}
		certs = append(certs, kp)
	} else if token, err = readToken(o.tokenFile, stdin); err != nil {
		return nil, "", err
	}
	roots, err := apiRoots(ctx, o)
	if err != nil {
		return nil, "", err
	}
	return tlsClientFor(roots, o.trustDomain, certs...), token, nil
}
