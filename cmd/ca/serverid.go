package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// The CA's API listener is recognised by more than its host name: any
// workload can hold a certificate from the same roots, and before the CA
// refused them a policy could grant a workload the CA's host name. So `ca`
// clients also require the listener's certificate to carry the CA's server
// identity, spiffe://<trust domain>/ca/server, which the CA issues to
// nothing but its own API listener. The trust domain is the one given
// (--trust-domain, $CA_TRUST_DOMAIN) or, when none is, the one the leaf's
// issuing intermediate is name-constrained to.

// errNotTheCA: the server's certificate verifies but is not the CA's server
// certificate.
var errNotTheCA = errors.New("the server is not the CA: its certificate does not carry the CA's server identity")

// trustDomainUsage is the help of the --trust-domain flag.
const trustDomainUsage = "the CA's trust `DOMAIN`: its API server must present spiffe://DOMAIN/ca/server (default $CA_TRUST_DOMAIN, else read from the CA's intermediate certificate)"

// checkServerIdentity checks the server's verified chains: the leaf must
// have exactly one URI SAN, spiffe://<td>/ca/server, with td as given or,
// if "", as the chain's intermediate constrains it.
func checkServerIdentity(chains [][]*x509.Certificate, trustDomain string) error {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return fmt.Errorf("%w: no verified certificate chain", errNotTheCA)
	}
	leaf := chains[0][0]
	td := trustDomain
	if td == "" {
		td = constrainedTrustDomain(chains)
	}
	if td == "" {
		return fmt.Errorf("%w: the CA's trust domain cannot be read from its certificate chain; pass --trust-domain (or set CA_TRUST_DOMAIN)", errNotTheCA)
	}
	want := issuer.ServerSPIFFEID(td)
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		got := "no URI SAN"
		if len(leaf.URIs) > 0 {
			got = leaf.URIs[0].String()
			if len(leaf.URIs) > 1 {
				got = fmt.Sprintf("%d URI SANs", len(leaf.URIs))
			}
		}
		return fmt.Errorf("%w: want %s, it presents %s; refusing to send credentials to it", errNotTheCA, want, got)
	}
	return nil
}

// constrainedTrustDomain is the one URI domain the first CA certificate
// above the leaf (in any verified chain) permits, or "".
func constrainedTrustDomain(chains [][]*x509.Certificate) string {
	for _, chain := range chains {
		for _, c := range chain[1:] {
			if len(c.PermittedURIDomains) == 1 {
				return c.PermittedURIDomains[0]
			}
		}
	}
	return ""
}

// tlsClientFor is an HTTPS client of the CA's API: it trusts roots, presents
// certs, and talks only to a server whose certificate carries the CA's
// server identity in trustDomain ("" = read from the chain).
func tlsClientFor(roots *x509.CertPool, trustDomain string, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: certs,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return checkServerIdentity(cs.VerifiedChains, trustDomain)
		},
	}}}
}
