package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/server"
)

const identityUsage = `usage: ca identity revoke SPIFFE_ID --reason REASON [--hold 24h]
       ca identity hold SPIFFE_ID --for 24h [--reason REASON]
       ca identity release SPIFFE_ID
       ca identity list
     each with --server https://HOST:PORT
         (--token-file FILE | --client-cert FILE --client-key FILE)
         (--ca-bundle FILE | --ca-fingerprint sha256:HEX) [--json]

Contains a compromised workload through the CA's API, as an operator.

  revoke   (revoker) revokes every unexpired certificate of SPIFFE_ID for
           REASON and, with --hold, refuses new certificates, renewals and
           JWT-SVIDs for it until the hold ends (403 identity_on_hold).
  hold     (revoker) the hold alone: current certificates stay valid until
           they expire, but cannot renew or mint JWT-SVIDs, and nothing new
           is issued. REASON defaults to unspecified.
  release  (admin) lifts every hold of SPIFFE_ID now.
  list     (auditor) the holds in force.

A hold lasts from 1m to 720h (30 days). REASON is an RFC 5280 reason name:
%s.
The API's TLS certificate and your credentials are checked as for ca revoke.
`

// identityOptions are the parsed flags of `ca identity`.
type identityOptions struct {
	verb, spiffeID, reason, hold string
	conn                         revokeOptions // server, credentials, roots, --json
}

func parseIdentityFlags(args []string, stderr io.Writer) (identityOptions, error) {
	var o identityOptions
	verb, args, fs, err := operatorVerb("ca identity", fmt.Sprintf(identityUsage, strings.Join(revoke.ReasonNames(), ", ")), args, stderr,
		"revoke", "hold", "release", "list")
	if err != nil {
		return o, err
	}
	o.verb = verb
	c := &o.conn
	switch o.verb {
	case "revoke":
		fs.StringVar(&o.reason, "reason", "", "RFC 5280 revocation reason name (required)")
		fs.StringVar(&o.hold, "hold", "", "also hold the identity for this long (1m to 720h), such as 24h")
	case "hold":
		fs.StringVar(&o.reason, "reason", "unspecified", "RFC 5280 reason name recorded with the hold")
		fs.StringVar(&o.hold, "for", "", "how long the hold lasts (1m to 720h), such as 24h (required)")
	}
	spiffeID, rest, err := c.parseVerbArgs(fs, args, stderr, o.verb != "list")
	if err != nil {
		return o, err
	}
	o.spiffeID = spiffeID
	switch {
	case len(rest) > 0:
		return o, fmt.Errorf("%w: unexpected arguments %q", errUsage, rest)
	case o.verb == "list" && o.spiffeID != "":
		return o, fmt.Errorf("%w: ca identity list takes no SPIFFE ID", errUsage)
	case o.verb != "list" && !strings.HasPrefix(o.spiffeID, "spiffe://"):
		return o, fmt.Errorf("%w: a SPIFFE ID (spiffe://trust-domain/path) is required", errUsage)
	case o.verb == "revoke" && o.reason == "":
		return o, fmt.Errorf("%w: --reason is required (one of %s)", errUsage, strings.Join(revoke.ReasonNames(), ", "))
	case o.verb == "hold" && o.hold == "":
		return o, fmt.Errorf("%w: --for is required, such as --for 24h", errUsage)
	}
	if o.reason != "" {
		if _, err := revoke.ReasonCode(o.reason); err != nil {
			return o, fmt.Errorf("%w: --reason must be one of %s", errUsage, strings.Join(revoke.ReasonNames(), ", "))
		}
	}
	if o.hold != "" {
		if d, err := time.ParseDuration(o.hold); err != nil || d <= 0 {
			return o, fmt.Errorf("%w: the hold must be a positive duration such as 24h", errUsage)
		}
	}
	return o, c.checkConn()
}

// cmdIdentity is `ca identity`, the operator's command-line client of
// /v1/identities/*.
func cmdIdentity(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parseIdentityFlags(args, stderr)
	if err != nil {
		return err
	}
	method, path := http.MethodPost, "/v1/identities/"+o.verb
	var body any
	switch o.verb {
	case "revoke", "hold":
		body = server.IdentityRequest{SPIFFEID: o.spiffeID, Reason: o.reason, Hold: o.hold}
	case "release":
		body = server.IdentityRequest{SPIFFEID: o.spiffeID}
	case "list":
		method, path = http.MethodGet, "/v1/identities/holds"
	}
	raw, printed, err := o.conn.call(ctx, stdin, stdout, method, path, body)
	if err != nil || printed {
		return err
	}
	return printIdentityAnswer(stdout, o.verb, raw)
}

func printIdentityAnswer(w io.Writer, verb string, raw []byte) error {
	bad := func(err error) error { return fmt.Errorf("the CA's answer does not decode: %w", err) }
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch verb {
	case "revoke":
		var a server.IdentityRevokeResponse
		if err := json.Unmarshal(raw, &a); err != nil {
			return bad(err)
		}
		fmt.Fprintf(w, "revoked %d certificates of %s\n", a.Revoked, a.SPIFFEID)
		for _, sn := range a.Serials {
			fmt.Fprintf(w, "  %s\n", sn)
		}
		if a.Hold != nil {
			fmt.Fprintf(w, "on hold until %s: no new certificates, renewals or JWT-SVIDs\n", ts(a.Hold.Until))
		}
	case "hold":
		var a server.HoldResponse
		if err := json.Unmarshal(raw, &a); err != nil {
			return bad(err)
		}
		fmt.Fprintf(w, "%s on hold until %s: no new certificates, renewals or JWT-SVIDs\n", a.Hold.SPIFFEID, ts(a.Hold.Until))
	case "release":
		var a server.ReleaseResponse
		if err := json.Unmarshal(raw, &a); err != nil {
			return bad(err)
		}
		fmt.Fprintf(w, "released %d holds of %s\n", len(a.Released), a.SPIFFEID)
	case "list":
		var a server.HoldList
		if err := json.Unmarshal(raw, &a); err != nil {
			return bad(err)
		}
		if len(a.Items) == 0 {
			fmt.Fprintln(w, "no identity is on hold")
		}
		for _, h := range a.Items {
			fmt.Fprintf(w, "%s\tuntil %s\t%s\tby %s\n", h.SPIFFEID, ts(h.Until), h.Reason, h.PlacedBy)
		}
	}
	return nil
}

// operatorCall sends one operator request (a JSON body unless body is nil)
// and returns the answer if its status is one of want (200 when want is
// empty); a refusal is a *problemError. ca identity and ca authz overrides
// share it.
func operatorCall(ctx context.Context, c *http.Client, method, u, token string, body any, want ...int) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if len(want) == 0 {
		want = []int{http.StatusOK}
	}
	if !slices.Contains(want, res.StatusCode) {
		var p server.Problem
		if json.Unmarshal(raw, &p) != nil || p.Reason == "" {
			return nil, &problemError{Status: res.StatusCode, Reason: "unknown", Detail: http.StatusText(res.StatusCode)}
		}
		return nil, &problemError{Status: res.StatusCode, Reason: string(p.Reason), Detail: p.Detail}
	}
	return raw, nil
}
