package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/server"
)

const revokeUsage = `usage: ca revoke SERIAL --reason REASON --server https://HOST:PORT
         (--token-file FILE | --client-cert FILE --client-key FILE)
         (--ca-bundle FILE | --ca-fingerprint sha256:HEX) [--scope lineage] [--json]

Revokes the certificate with this serial (hex; colons and upper case are
fine) through the CA's API, as an operator with the revoker role. REASON is
an RFC 5280 reason name: %s.
With keyCompromise, or with --scope lineage and any reason, every
certificate renewed from it (transitively) is revoked too, in one
transaction. Revoking an already revoked certificate changes nothing and
says so.

The API's TLS certificate is verified against the roots in --ca-bundle, or
against the root of the CA's /bundle.pem whose SHA-256 fingerprint is
--ca-fingerprint. You authenticate with a bearer token from the operator IdP
(--token-file, "-" for stdin) or with a client certificate whose SPIFFE ID
the policy makes a revoker or admin.
`

// maxTokenFile bounds an operator token file.
const maxTokenFile = 64 << 10

// revokeOptions are the parsed flags of `ca revoke`.
type revokeOptions struct {
	serial, reason, caURL            string
	tokenFile, clientCert, clientKey string
	caBundle, caFingerprint          string
	trustDomain                      string
	scope                            string
	json                             bool
}

func parseRevokeFlags(args []string, stderr io.Writer) (revokeOptions, error) {
	var o revokeOptions
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), revokeUsage, strings.Join(revoke.ReasonNames(), ", "))
		fs.PrintDefaults()
	}
	fs.StringVar(&o.reason, "reason", "", "RFC 5280 revocation reason name (required)")
	o.connFlags(fs)
	fs.StringVar(&o.caURL, "ca-url", "", "the same as --server (older spelling)")
	fs.StringVar(&o.scope, "scope", "", `"lineage" also revokes every certificate renewed from this one (keyCompromise always does)`)
	// The serial may come before the flags (ca revoke SERIAL --reason ...).
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.serial, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return o, err
	}
	rest := fs.Args()
	if o.serial == "" && len(rest) > 0 {
		o.serial, rest = rest[0], rest[1:]
	}
	switch {
	case len(rest) > 0:
		return o, fmt.Errorf("%w: unexpected arguments %q", errUsage, rest)
	case o.serial == "":
		return o, fmt.Errorf("%w: the serial number is required", errUsage)
	case o.reason == "":
		return o, fmt.Errorf("%w: --reason is required (one of %s)", errUsage, strings.Join(revoke.ReasonNames(), ", "))
	case o.scope != "" && o.scope != "lineage":
		return o, fmt.Errorf("%w: --scope must be lineage", errUsage)
	}
	if _, err := revoke.ReasonCode(o.reason); err != nil {
		return o, fmt.Errorf("%w: --reason must be one of %s", errUsage, strings.Join(revoke.ReasonNames(), ", "))
	}
	sn, err := revoke.NormalizeSerial(o.serial)
	if err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	o.serial = sn
	return o, o.checkConn()
}

// cmdRevoke is `ca revoke`, the operator's command-line client of POST
// /v1/certificates/{serial}/revoke.
func cmdRevoke(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parseRevokeFlags(args, stderr)
	if err != nil {
		return err
	}
	client, token, err := operatorClient(ctx, o, stdin)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()

	res, raw, err := postRevoke(ctx, client, o, token)
	if err != nil {
		return err
	}
	if o.json {
		_, err := fmt.Fprintln(stdout, strings.TrimSpace(string(raw)))
		return err
	}
	c := res.Certificate
	at := "?"
	if c.RevokedAt != nil {
		at = c.RevokedAt.UTC().Format(time.RFC3339)
	}
	if res.AlreadyRevoked {
		fmt.Fprintf(stdout, "%s was already revoked at %s (reason %s)", c.Serial, at, c.RevocationReason)
		if res.Revoked == 0 {
			fmt.Fprintln(stdout, "; nothing changed")
			return nil
		}
		fmt.Fprintln(stdout)
	} else {
		fmt.Fprintf(stdout, "revoked %s (%s) at %s: %s\n", c.Serial, c.RevocationReason, at, c.SPIFFEID)
	}
	for _, sn := range res.RevokedSerials {
		if sn != c.Serial {
			fmt.Fprintf(stdout, "revoked %s, renewed from it (%s)\n", sn, o.reason)
		}
	}
	if res.Revoked > 1 || (res.AlreadyRevoked && res.Revoked > 0) {
		fmt.Fprintf(stdout, "%d certificates revoked\n", res.Revoked)
	}
	return nil
}

// readToken reads an operator token from a file or stdin ("-").
func readToken(path string, stdin io.Reader) (string, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("%w: --token-file: %v", errUsage, err)
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("reading the token: %w", err)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" || len(raw) > maxTokenFile || strings.ContainsAny(tok, " \r\n\t") {
		return "", fmt.Errorf("%w: --token-file must hold one token", errUsage)
	}
	return tok, nil
}

// apiRoots are the roots the API listener's certificate must chain to: the
// --ca-bundle file, or the pinned root of the CA's own bundle.
func apiRoots(ctx context.Context, o revokeOptions) (*x509.CertPool, error) {
	if o.caBundle != "" {
		raw, err := os.ReadFile(o.caBundle)
		if err != nil {
			return nil, fmt.Errorf("%w: --ca-bundle: %v", errUsage, err)
		}
		roots := parseCerts(raw)
		if len(roots) == 0 {
			return nil, fmt.Errorf("%w: --ca-bundle %s holds no certificate", errUsage, o.caBundle)
		}
		pool := x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		return pool, nil
	}
	fp, err := normalizeFingerprint(o.caFingerprint)
	if err != nil {
		return nil, err
	}
	pool, _, _, err := pinnedTrustFor(ctx, o.caURL, []string{fp}, o.trustDomain)
	return pool, err
}

// postRevoke sends the revocation and decodes the answer; a refusal is a
// *problemError.
func postRevoke(ctx context.Context, c *http.Client, o revokeOptions, token string) (*server.RevokeResponse, []byte, error) {
	body, _ := json.Marshal(server.RevokeRequest{Reason: o.reason, Scope: o.scope})
	u := o.caURL + "/v1/certificates/" + o.serial + "/revoke"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: %w", u, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("POST %s: %w", u, err)
	}
	if res.StatusCode != http.StatusOK {
		var p server.Problem
		if json.Unmarshal(raw, &p) != nil || p.Reason == "" {
			return nil, nil, &problemError{Status: res.StatusCode, Reason: "unknown", Detail: http.StatusText(res.StatusCode)}
		}
		return nil, nil, &problemError{Status: res.StatusCode, Reason: string(p.Reason), Detail: p.Detail}
	}
	var out server.RevokeResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, nil, fmt.Errorf("the CA's answer does not decode: %w", err)
	}
	return &out, raw, nil
}
