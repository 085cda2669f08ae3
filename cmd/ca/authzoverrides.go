package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/server"
)

const authzOverridesUsage = `usage: ca authz overrides request --source ID --service S --endpoint E --ttl 2h --reason TEXT
       ca authz overrides approve ID
       ca authz overrides end ID
       ca authz overrides list
     each with --server https://HOST:PORT
         (--token-file FILE | --client-cert FILE --client-key FILE)
         (--ca-bundle FILE | --ca-fingerprint sha256:HEX) [--trust-domain D] [--json]

Emergency overrides of the service-to-service authorization policy, through
the CA's API, as an operator.

  request  (admin) SOURCE may call ENDPOINT of SERVICE for TTL (1m to 24h)
           once a different admin approves it; until then it is pending.
  approve  (admin, not the requester) makes it active from now for its TTL;
           the services pick it up with their next policy refresh.
  end      (admin) ends a pending or active override now.
  list     (auditor) every override with its state.

The API's TLS certificate and your credentials are checked as for ca revoke.
`

// authzOverridesOptions are the parsed flags of `ca authz overrides`.
type authzOverridesOptions struct {
	verb, id                               string
	source, service, endpoint, ttl, reason string
	conn                                   revokeOptions
}

func parseAuthzOverridesFlags(args []string, stderr io.Writer) (authzOverridesOptions, error) {
	var o authzOverridesOptions
	verb, args, fs, err := operatorVerb("ca authz overrides", authzOverridesUsage, args, stderr, "request", "approve", "end", "list")
	if err != nil {
		return o, err
	}
	o.verb = verb
	if o.verb == "request" {
		fs.StringVar(&o.source, "source", "", "the calling SPIFFE ID the override allows (required)")
		fs.StringVar(&o.service, "service", "", "the destination service (required)")
		fs.StringVar(&o.endpoint, "endpoint", "", "the endpoint of the service (required)")
		fs.StringVar(&o.ttl, "ttl", "", "how long it stays active once approved, 1m to 24h (required)")
		fs.StringVar(&o.reason, "reason", "", "why, for the audit log and the approver (required)")
	}
	c := &o.conn
	id, rest, err := c.parseVerbArgs(fs, args, stderr, o.verb == "approve" || o.verb == "end")
	if err != nil {
		return o, err
	}
	o.id = id
	switch {
	case len(rest) > 0:
		return o, fmt.Errorf("%w: unexpected arguments %q", errUsage, rest)
	case (o.verb == "approve" || o.verb == "end") && o.id == "":
		return o, fmt.Errorf("%w: the override ID is required", errUsage)
	case (o.verb == "list" || o.verb == "request") && o.id != "":
		return o, fmt.Errorf("%w: ca authz overrides %s takes no ID", errUsage, o.verb)
	case o.verb == "request" && (o.source == "" || o.service == "" || o.endpoint == "" || o.ttl == "" || o.reason == ""):
		return o, fmt.Errorf("%w: --source, --service, --endpoint, --ttl and --reason are required", errUsage)
	case strings.ContainsAny(o.id, "/?#"):
		return o, fmt.Errorf("%w: %q is not an override ID", errUsage, o.id)
	}
	if o.ttl != "" {
		if d, err := time.ParseDuration(o.ttl); err != nil || d < time.Minute || d > 24*time.Hour {
			return o, fmt.Errorf("%w: --ttl must be a duration from 1m to 24h, such as 2h", errUsage)
		}
	}
	return o, c.checkConn()
}

// cmdAuthzOverrides is `ca authz overrides`, the operator's command-line
// client of /v1/authz/overrides.
func cmdAuthzOverrides(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parseAuthzOverridesFlags(args, stderr)
	if err != nil {
		return err
	}
	method, path := http.MethodPost, "/v1/authz/overrides"
	var body any
	switch o.verb {
	case "request":
		body = server.OverrideRequest{Source: o.source, Service: o.service, Endpoint: o.endpoint, TTL: o.ttl, Reason: o.reason}
	case "approve", "end":
		path += "/" + url.PathEscape(o.id) + "/" + o.verb
	case "list":
		method = http.MethodGet
	}
	raw, printed, err := o.conn.call(ctx, stdin, stdout, method, path, body, http.StatusOK, http.StatusCreated)
	if err != nil || printed {
		return err
	}
	if o.verb == "list" {
		var l server.OverrideList
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("the CA's answer does not decode: %w", err)
		}
		return printOverrides(stdout, l.Items)
	}
	var v server.OverrideView
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("the CA's answer does not decode: %w", err)
	}
	switch v.State {
	case "pending":
		fmt.Fprintf(stdout, "override %s requested: %s may call %s/%s for %s once another admin approves it\n", v.ID, v.Source, v.Service, v.Endpoint, v.TTL)
	case "active":
		fmt.Fprintf(stdout, "override %s active until %s: %s may call %s/%s\n", v.ID, v.Until.UTC().Format(time.RFC3339), v.Source, v.Service, v.Endpoint)
	default:
		fmt.Fprintf(stdout, "override %s %s\n", v.ID, v.State)
	}
	return nil
}

func printOverrides(w io.Writer, items []server.OverrideView) error {
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "no overrides")
		return err
	}
	tw := table(w, "ID\tSTATE\tSOURCE\tSERVICE\tENDPOINT\tTTL\tREQUESTED BY\tAPPROVED BY\tUNTIL")
	for _, v := range items {
		until := "-"
		if v.Until != nil {
			until = v.Until.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.State, v.Source, v.Service, v.Endpoint, v.TTL,
			v.RequestedBy, orDash(v.ApprovedBy), until)
	}
	return tw.Flush()
}
