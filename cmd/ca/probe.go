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
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/workload-ca/workload-ca/pkg/mtls"
)

// errProbeFailed is returned when a probe found a failure; the report is
// already printed.
var errProbeFailed = errors.New("probe failed")

// probeReport is `ca probe --json`'s output. Field names are stable.
type probeReport struct {
	Address    string `json:"address"`
	ServerName string `json:"server_name"`
	OK         bool   `json:"ok"`
	// Reason is the first failure's mtls reason ("" when OK); ReasonFrom
	// says who decided it: "probe" (this side's checks) or "server" (its
	// alert).
	Reason     string `json:"reason,omitempty"`
	ReasonFrom string `json:"reason_from,omitempty"`
	Detail     string `json:"detail,omitempty"`
	Error      string `json:"error,omitempty"`

	Protocol    string `json:"protocol,omitempty"`
	CipherSuite string `json:"cipher_suite,omitempty"`
	ALPN        string `json:"alpn,omitempty"`

	PeerID        string      `json:"peer_spiffe_id,omitempty"`
	PeerChain     []probeCert `json:"peer_chain,omitempty"`
	ChainVerified bool        `json:"chain_verified"`
	ExpectID      string      `json:"expect_id,omitempty"`
	Authorized    bool        `json:"authorized"`

	CRL  *probeRevocation `json:"crl,omitempty"`
	OCSP *probeRevocation `json:"ocsp,omitempty"`

	ClientCert *probeCert `json:"client_certificate,omitempty"`
	// ServerVerdict is what the server did with our client certificate:
	// "accepted", "rejected" (then ServerReason), or "unknown" (the server
	// closed without an alert, or did not ask for a certificate).
	ServerVerdict string `json:"server_verdict,omitempty"`
	ServerReason  string `json:"server_reason,omitempty"`
	ServerAlert   uint8  `json:"server_alert,omitempty"`
}

type probeCert struct {
	Subject          string    `json:"subject"`
	Issuer           string    `json:"issuer"`
	Serial           string    `json:"serial"`
	SPIFFEID         string    `json:"spiffe_id,omitempty"`
	NotBefore        time.Time `json:"not_before"`
	NotAfter         time.Time `json:"not_after"`
	ExpiresIn        string    `json:"expires_in"`
	ExpiresInMinutes int64     `json:"expires_in_minutes"`
	IsCA             bool      `json:"is_ca"`
	ExtKeyUsage      []string  `json:"ext_key_usage,omitempty"`
}

type probeRevocation struct {
	Status     string     `json:"status"`
	URL        string     `json:"url,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	NextUpdate *time.Time `json:"next_update,omitempty"`
	Error      string     `json:"error,omitempty"`
}

type probeOptions struct {
	addr, serverName                string
	bundleFile, bundleURL, trustDom string
	clientCert, clientKey, clientCh string
	expectID                        string
	revocation                      string
	timeout, settle                 time.Duration
	jsonOut                         bool
}

// cmdProbe connects to a TLS server and reports everything needed to debug a
// failed mTLS call; exit status 1 on any failure.
func cmdProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	var o probeOptions
	fs.StringVar(&o.bundleFile, "bundle", "", "trust bundle `FILE` (bundle.json or bundle.pem)")
	fs.StringVar(&o.bundleURL, "bundle-url", "", "fetch the trust bundle from `URL` (the CA's /bundle.json)")
	fs.StringVar(&o.trustDom, "trust-domain", "", "trust domain of the bundle (default: that of --expect-id, else of the server's certificate)")
	fs.StringVar(&o.clientCert, "client-cert", "", "present this certificate `FILE` (PEM, leaf first)")
	fs.StringVar(&o.clientKey, "client-key", "", "private key `FILE` of --client-cert")
	fs.StringVar(&o.clientCh, "client-chain", "", "intermediates `FILE` of --client-cert (chain.pem), if not in it")
	fs.StringVar(&o.expectID, "expect-id", "", "the server must have this SPIFFE `ID` (default: any ID the bundle verifies)")
	fs.StringVar(&o.serverName, "server-name", "", "SNI server name (default: the host of HOST:PORT)")
	fs.StringVar(&o.revocation, "revocation", "auto", "auto (check CRL and OCSP where the certificate names them; revoked fails), crl, ocsp (that one must answer), off")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "connect, handshake and fetch timeout")
	fs.DurationVar(&o.settle, "settle", 500*time.Millisecond, "how long to wait after the handshake for the server's verdict on our certificate (TLS 1.3)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	// HOST:PORT may come before the flags (the documented form) or after.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.addr, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if o.addr == "" && fs.NArg() == 1 {
		o.addr = fs.Arg(0)
	} else if o.addr == "" || fs.NArg() != 0 {
		return fmt.Errorf("%w: usage: ca probe HOST:PORT [flags]", errUsage)
	}
	host, _, err := net.SplitHostPort(o.addr)
	if err != nil {
		return fmt.Errorf("%w: %q is not HOST:PORT", errUsage, o.addr)
	}
	if o.serverName == "" {
		o.serverName = host
	}
	if (o.bundleFile == "") == (o.bundleURL == "") {
		return fmt.Errorf("%w: give exactly one of --bundle and --bundle-url", errUsage)
	}
	if (o.clientCert == "") != (o.clientKey == "") {
		return fmt.Errorf("%w: --client-cert and --client-key go together", errUsage)
	}
	switch o.revocation {
	case "auto", "crl", "ocsp", "off":
	default:
		return fmt.Errorf("%w: --revocation must be auto, crl, ocsp or off", errUsage)
	}
	var expect spiffeid.ID
	if o.expectID != "" {
		if expect, err = spiffeid.FromString(o.expectID); err != nil {
			return fmt.Errorf("%w: --expect-id: %v", errUsage, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	rep := probe(ctx, o, expect)
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printProbe(stdout, rep)
	}
	if !rep.OK {
		if rep.Reason != "" {
			return fmt.Errorf("%w: %s", errProbeFailed, rep.Reason)
		}
		return fmt.Errorf("%w: %s", errProbeFailed, rep.Error)
	}
	return nil
}

// fail records the first failure only.
func (r *probeReport) fail(reason mtls.Reason, from, detail string) {
	if !r.OK && (r.Reason != "" || r.Error != "") {
		return
	}
	r.OK, r.Reason, r.ReasonFrom, r.Detail = false, string(reason), from, detail
}

func probe(ctx context.Context, o probeOptions, expect spiffeid.ID) *probeReport {
	rep := &probeReport{Address: o.addr, ServerName: o.serverName, OK: true, ExpectID: o.expectID}
	errorf := func(format string, args ...any) *probeReport {
		if rep.OK {
			rep.OK, rep.Error = false, fmt.Sprintf(format, args...)
		}
		return rep
	}
	now := time.Now()
	cfg := &tls.Config{ServerName: o.serverName, MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} //nolint:gosec // verified below, to report rather than fail
	if o.clientCert != "" {
		files, err := mtls.LoadCertFiles(mtls.CertPaths{Cert: o.clientCert, Key: o.clientKey, Chain: o.clientCh}, nil)
		if err != nil {
			return errorf("client certificate: %v", err)
		}
		own, _ := files.Certificate()
		c := describeCert(own.Leaf, now)
		rep.ClientCert = &c
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return own, nil }
	}
	dialer := &tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	raw, err := dialer.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		if f, ok := mtls.Classify(err); ok {
			rep.fail(f.Reason, "server", fmt.Sprintf("the server ended the handshake with TLS alert %d", f.Alert))
			rep.ServerVerdict, rep.ServerReason, rep.ServerAlert = "rejected", string(f.Reason), f.Alert
			rep.Error = err.Error()
			return rep
		}
		return errorf("connecting: %v", err)
	}
	conn := raw.(*tls.Conn)
	defer conn.Close()
	cs := conn.ConnectionState()
	rep.Protocol, rep.CipherSuite, rep.ALPN = tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.NegotiatedProtocol
	for _, c := range cs.PeerCertificates {
		rep.PeerChain = append(rep.PeerChain, describeCert(c, now))
	}
	if len(cs.PeerCertificates) > 0 {
		rep.PeerID = claimedIDOf(cs.PeerCertificates[0])
	}

	// Our verdict on the server.
	verified := probeVerify(ctx, o, expect, cs.PeerCertificates, rep)

	// The server's verdict on us: in TLS 1.3 its rejection alert arrives
	// after our handshake completed.
	rep.ServerVerdict = serverVerdict(conn, o.settle, rep)

	if verified != nil && o.revocation != "off" && len(verified.Chain) > 1 {
		probeRevocationStatus(ctx, o, verified.Chain[0], verified.Chain[1], rep)
	}
	return rep
}

func probeVerify(ctx context.Context, o probeOptions, expect spiffeid.ID, certs []*x509.Certificate, rep *probeReport) *mtls.Verified {
	td := expect.TrustDomain()
	if o.trustDom != "" {
		var err error
		if td, err = spiffeid.TrustDomainFromString(o.trustDom); err != nil {
			rep.OK, rep.Error = false, fmt.Sprintf("--trust-domain: %v", err)
			return nil
		}
	}
	if td.IsZero() && len(certs) > 0 {
		if id, err := x509svid.IDFromCert(certs[0]); err == nil {
			td = id.TrustDomain()
		}
	}
	if td.IsZero() {
		td = spiffeid.RequireTrustDomainFromString("unknown.invalid")
	}
	src, err := loadProbeBundle(ctx, o, td)
	if err != nil {
		rep.OK, rep.Error = false, fmt.Sprintf("trust bundle: %v", err)
		return nil
	}
	authorize := mtls.AuthorizeAny()
	if !expect.IsZero() {
		authorize = mtls.AuthorizeID(expect)
	}
	verify := func(a mtls.Authorizer) (*mtls.Verified, error) {
		v, err := mtls.NewVerifier(mtls.VerifierConfig{Bundles: src, Authorize: a})
		if err != nil {
			return nil, err
		}
		return v.Verify(ctx, certs, mtls.PeerIsServer)
	}
	verified, err := verify(authorize)
	if err == nil {
		rep.ChainVerified, rep.Authorized = true, true
		return verified
	}
	re, ok := errors.AsType[*mtls.RejectError](err)
	if !ok {
		rep.OK, rep.Error = false, err.Error()
		return nil
	}
	if !expect.IsZero() {
		// Did only the identity check fail? Then the chain verifies (and
		// revocation is still worth reporting).
		if anyPeer, err := verify(mtls.AuthorizeAny()); err == nil {
			rep.ChainVerified = true
			rep.fail(re.Reason, "probe", re.Detail)
			return anyPeer
		}
	}
	rep.fail(re.Reason, "probe", re.Detail)
	return nil
}

func loadProbeBundle(ctx context.Context, o probeOptions, td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if o.bundleFile != "" {
		return mtls.LoadBundleFile(td, o.bundleFile)
	}
	hb, err := mtls.NewHTTPBundle(ctx, mtls.HTTPBundleConfig{URL: o.bundleURL, TrustDomain: td, HTTPClient: &http.Client{Timeout: o.timeout}})
	if err != nil {
		return nil, err
	}
	b, _ := hb.Current()
	return b, nil
}

// serverVerdict reads briefly after the handshake: an alert means the
// server rejected us; silence or data means it accepted.
func serverVerdict(conn *tls.Conn, settle time.Duration, rep *probeReport) string {
	_ = conn.SetReadDeadline(time.Now().Add(settle))
	_, err := conn.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case err == nil, errors.As(err, &ne) && ne.Timeout():
		return "accepted"
	}
	if f, ok := mtls.Classify(err); ok {
		rep.ServerReason, rep.ServerAlert = string(f.Reason), f.Alert
		rep.fail(f.Reason, "server", fmt.Sprintf("the server rejected our certificate with TLS alert %d", f.Alert))
		return "rejected"
	}
	return "unknown"
}

func probeRevocationStatus(ctx context.Context, o probeOptions, leaf, issuer *x509.Certificate, rep *probeReport) {
	chk, err := mtls.NewRevocationChecker(mtls.RevocationConfig{CRL: true, OCSP: true, HTTPClient: &http.Client{Timeout: o.timeout}})
	if err != nil {
		rep.OK, rep.Error = false, err.Error()
		return
	}
	report := func(kind string, res mtls.RevocationResult) *probeRevocation {
		if res.Status == mtls.StatusNotChecked {
			if o.revocation == kind {
				rep.fail(mtls.ReasonRevocationUnknown, "probe", "the certificate names no "+strings.ToUpper(kind)+" URL")
			}
			return &probeRevocation{Status: "not_published"}
		}
		pr := &probeRevocation{Status: string(res.Status), URL: res.URL}
		if !res.NextUpdate.IsZero() {
			pr.NextUpdate = &res.NextUpdate
		}
		switch res.Status {
		case mtls.StatusRevoked:
			pr.RevokedAt = &res.RevokedAt
			rep.fail(mtls.ReasonRevoked, "probe", fmt.Sprintf("%s says serial %s was revoked at %s", strings.ToUpper(kind), leaf.SerialNumber.Text(16), res.RevokedAt.UTC().Format(time.RFC3339)))
		case mtls.StatusUnknown:
			pr.Error = res.Err.Error()
			if o.revocation == kind {
				rep.fail(mtls.ReasonRevocationUnknown, "probe", pr.Error)
			}
		}
		return pr
	}
	if o.revocation == "auto" || o.revocation == "crl" {
		rep.CRL = report("crl", chk.CheckCRL(ctx, leaf, issuer))
	}
	if o.revocation == "auto" || o.revocation == "ocsp" {
		rep.OCSP = report("ocsp", chk.CheckOCSP(ctx, leaf, issuer))
	}
}

func describeCert(c *x509.Certificate, now time.Time) probeCert {
	left := c.NotAfter.Sub(now)
	pc := probeCert{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: c.SerialNumber.Text(16), SPIFFEID: claimedIDOf(c),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), ExpiresIn: humanDuration(left),
		ExpiresInMinutes: int64(left / time.Minute), IsCA: c.IsCA,
	}
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			pc.ExtKeyUsage = append(pc.ExtKeyUsage, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			pc.ExtKeyUsage = append(pc.ExtKeyUsage, "clientAuth")
		default:
			pc.ExtKeyUsage = append(pc.ExtKeyUsage, fmt.Sprintf("eku(%d)", u))
		}
	}
	return pc
}

func claimedIDOf(c *x509.Certificate) string {
	if id, err := x509svid.IDFromCert(c); err == nil {
		return id.String()
	}
	return ""
}

// humanDuration renders d as days, hours and minutes ("-2d 3h" when past).
func humanDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	hours := d / time.Hour
	mins := (d - hours*time.Hour) / time.Minute
	if days > 0 {
		return fmt.Sprintf("%s%dd %dh %dm", sign, days, hours, mins)
	}
	return fmt.Sprintf("%s%dh %dm", sign, hours, mins)
}

func printProbe(w io.Writer, r *probeReport) {
	fmt.Fprintf(w, "probe %s (server name %s)\n", r.Address, r.ServerName)
	if r.Protocol != "" {
		fmt.Fprintf(w, "  protocol:        %s, %s", r.Protocol, r.CipherSuite)
		if r.ALPN != "" {
			fmt.Fprintf(w, ", ALPN %s", r.ALPN)
		}
		fmt.Fprintln(w)
	}
	if r.PeerID != "" {
		fmt.Fprintf(w, "  server identity: %s\n", r.PeerID)
	}
	for i, c := range r.PeerChain {
		fmt.Fprintf(w, "  chain[%d]:        %s\n                   issuer %s, serial %s\n                   valid %s .. %s (expires in %s)\n",
			i, c.Subject, c.Issuer, c.Serial, c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), c.ExpiresIn)
	}
	if len(r.PeerChain) > 0 {
		fmt.Fprintf(w, "  chain verifies against the bundle: %v\n", r.ChainVerified)
		if r.ExpectID != "" {
			fmt.Fprintf(w, "  identity %s: authorized %v\n", r.ExpectID, r.Authorized)
		}
	}
	for _, x := range []struct {
		name string
		r    *probeRevocation
	}{{"CRL", r.CRL}, {"OCSP", r.OCSP}} {
		if x.r == nil {
			continue
		}
		fmt.Fprintf(w, "  %-5s %s", x.name+":", x.r.Status)
		if x.r.URL != "" {
			fmt.Fprintf(w, " (%s)", x.r.URL)
		}
		if x.r.Error != "" {
			fmt.Fprintf(w, ": %s", x.r.Error)
		}
		fmt.Fprintln(w)
	}
	if r.ClientCert != nil {
		fmt.Fprintf(w, "  our certificate: %s, serial %s, expires in %s\n", r.ClientCert.SPIFFEID, r.ClientCert.Serial, r.ClientCert.ExpiresIn)
	}
	if r.ServerVerdict != "" {
		fmt.Fprintf(w, "  server's verdict on us: %s", r.ServerVerdict)
		if r.ServerReason != "" {
			fmt.Fprintf(w, " (%s, alert %d)", r.ServerReason, r.ServerAlert)
		}
		fmt.Fprintln(w)
	}
	switch {
	case r.OK:
		fmt.Fprintln(w, "RESULT: ok")
	case r.Reason != "":
		fmt.Fprintf(w, "RESULT: FAILED, reason %s (decided by the %s): %s\n", r.Reason, r.ReasonFrom, r.Detail)
	default:
		fmt.Fprintf(w, "RESULT: FAILED: %s\n", r.Error)
	}
}
