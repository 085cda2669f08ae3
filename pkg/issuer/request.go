package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/names"
)

// Request is an already-authorised request for a leaf certificate. The
// issuer checks it is well-formed, not that the caller may have it.
type Request struct {
	// PublicKey is the workload's key: ECDSA P-256 or P-384, Ed25519, or RSA of
	// at least 2048 bits.
	PublicKey crypto.PublicKey
	// SPIFFEID is required, spiffe://<TrustDomain>/<path>, and becomes the only
	// URI SAN.
	SPIFFEID string
	// DNSNames are optional DNS SANs, lowercased, then checked by
	// names.CheckDNSName (lower-case LDH, no wildcard, no IP literal). One
	// label is allowed here, for the CA's own "localhost"; the policy
	// grants workloads only names of two labels or more.
	DNSNames []string
	// IPAddresses are IP SANs, meant only for the CA's own API server
	// certificate.
	IPAddresses []net.IP
	// TTL is the requested lifetime: 0 means Config.DefaultTTL, more than
	// Config.MaxTTL is shortened to it, and notAfter never passes the issuing
	// certificate's notAfter.
	TTL time.Duration
	// Provenance is recorded as given (valid JSON, or empty).
	Provenance json.RawMessage
	// PolicyRule and PolicyVersion name the decision that authorised this.
	PolicyRule, PolicyVersion string
	// RenewedFrom is the serial of the certificate this one renews, or "".
	RenewedFrom string
	// Repository, TokenIssuer and Subject are the provenance fields
	// inventory searches use (store.Certificate); an enrollment sets them,
	// a renewal inherits its predecessor's in the store.
	Repository, TokenIssuer, Subject string
	// Actor and RequestID go into the audit entry and the log.
	Actor, RequestID string
	// Action is the audit action: "issue" when empty, or "renew" when empty
	// and RenewedFrom is set.
	Action string
	// CAServer marks the CA's own API server certificate: only it may carry
	// the CA's reserved names (Config.ReservedDNSNames, ReservedIPs and
	// spiffe://<td>/ca/), and its SPIFFE ID must be ServerSPIFFEID. Every
	// other request naming one of them is refused with a *ReservedNameError.
	CAServer bool
	// CAAuthzPolicy marks the CA's authorization-policy signing certificate
	// (GET /v1/authz/policy): its SPIFFE ID must be AuthzPolicySPIFFEID, the
	// one other /ca/ identity, with no DNS names or IP addresses. It cannot
	// be combined with CAServer.
	CAAuthzPolicy bool
}

// Limits on request fields.
const (
	maxDNSNames = 100
	maxIPs      = 20
	maxRSABits  = 8192
)

// validRequest is a request that passed validation, normalised.
type validRequest struct {
	Request
	spiffeURI *url.URL
	rsaKey    bool
	notBefore time.Time
	notAfter  time.Time
}

// validate checks r and computes the validity window at now. Every refusal
// wraps ErrInvalidRequest.
func (i *Issuer) validate(r Request, now time.Time) (validRequest, error) {
	v := validRequest{Request: r}
	switch pub := r.PublicKey.(type) {
	case nil:
		return v, invalidf("public key is required")
	case *ecdsa.PublicKey:
		if pub == nil || (pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384()) {
			return v, invalidf("ECDSA keys must be on P-256 or P-384")
		}
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return v, invalidf("malformed Ed25519 key")
		}
	case *rsa.PublicKey:
		if pub == nil || pub.N == nil {
			return v, invalidf("malformed RSA key")
		}
		if bits := pub.N.BitLen(); bits < 2048 || bits > maxRSABits {
			return v, invalidf("RSA keys must have 2048 to %d bits, not %d", maxRSABits, bits)
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return v, invalidf("RSA public exponent must be odd and at least 3")
		}
		v.rsaKey = true
	default:
		return v, invalidf("unsupported public key type %T", r.PublicKey)
	}

	u, err := parseSPIFFEID(r.SPIFFEID, i.cfg.TrustDomain)
	if err != nil {
		return v, err
	}
	v.spiffeURI = u

	if len(r.DNSNames) > maxDNSNames {
		return v, invalidf("at most %d DNS names", maxDNSNames)
	}
	v.DNSNames = nil
	seen := map[string]bool{}
	for _, n := range r.DNSNames {
		n = strings.ToLower(n)
		// The syntax rule only (pkg/names): the CA's own server
		// certificate names "localhost"; the two-label rule for
		// workloads is the policy's, applied before a request gets here.
		if err := names.CheckDNSName(n); err != nil {
			return v, invalidf("%v", err)
		}
		if seen[n] {
			return v, invalidf("duplicate DNS name %q", n)
		}
		seen[n] = true
		v.DNSNames = append(v.DNSNames, n)
	}
	if len(r.IPAddresses) > maxIPs {
		return v, invalidf("at most %d IP addresses", maxIPs)
	}
	v.IPAddresses = nil
	for _, ip := range r.IPAddresses {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return v, invalidf("malformed IP address")
		}
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		v.IPAddresses = append(v.IPAddresses, ip)
	}
	if err := i.checkReserved(v); err != nil {
		return v, err
	}
	if len(r.Provenance) > 0 && !json.Valid(r.Provenance) {
		return v, invalidf("provenance is not valid JSON")
	}

	ttl := r.TTL
	switch {
	case ttl < 0:
		return v, invalidf("TTL must not be negative")
	case ttl == 0:
		ttl = i.cfg.DefaultTTL
	case ttl > i.cfg.MaxTTL:
		ttl = i.cfg.MaxTTL
	}
	v.notBefore = now.Add(-i.cfg.Backdate).Truncate(time.Second)
	v.notAfter = now.Add(ttl).Truncate(time.Second)
	if v.notBefore.Before(i.cert.NotBefore) {
		v.notBefore = i.cert.NotBefore
	}
	if v.notAfter.After(i.cert.NotAfter) {
		v.notAfter = i.cert.NotAfter
	}
	if !now.Before(i.cert.NotAfter) || now.Before(i.cert.NotBefore) {
		return v, ErrIssuerExpired
	}

	if v.Action == "" {
		v.Action = "issue"
		if v.RenewedFrom != "" {
			v.Action = "renew"
		}
	}
	return v, nil
}

// parseSPIFFEID checks id is a SPIFFE ID (names.SplitSPIFFEID: so no
// userinfo, port, upper-case trust domain, percent-encoding, query, fragment,
// or empty or dot segment) in trust domain td, with a path.
func parseSPIFFEID(id, td string) (*url.URL, error) {
	idTD, path, err := names.SplitSPIFFEID(id)
	if err != nil {
		return nil, invalidf("%v", err)
	}
	if idTD != td {
		return nil, invalidf("SPIFFE ID is not in trust domain %q", td)
	}
	if path == "" {
		return nil, invalidf("SPIFFE ID must have a path")
	}
	u, err := url.Parse(id)
	if err != nil || u.Host != td || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.RawPath != "" {
		return nil, invalidf("SPIFFE ID is not a plain URI")
	}
	return u, nil
}
