// Package mtls exists so that services using workload-ca certificates verify
// their peers correctly (by SPIFFE ID, against the CA's published bundle, with
// optional revocation checks) and so that every rejected handshake says why,
// with one reason from a fixed set, on the side that rejected it and, where
// the TLS alert allows, on the other side too.
//
// Build a server or client tls.Config with ServerTLSConfig or ClientTLSConfig
// from a Config: a bundle source (HTTPBundle fetching the CA's /bundle.json,
// or a static file), the workload's own certificate files (CertFiles,
// reloaded when `ca renew` replaces them) and an Authorizer.
package mtls
