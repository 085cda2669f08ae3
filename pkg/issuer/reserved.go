package issuer

import (
	"errors"
	"fmt"
	"strings"
)

// The CA's own names. `ca` clients recognise the CA's API listener by its
// host name and by its SPIFFE ID, so a workload that held a certificate for
// either could pose as the CA and collect enrollment and operator tokens.
// The issuer therefore refuses them in every leaf except the CA's own
// server certificate (Request.CAServer), whatever the policy says.

// ErrReservedName is what every *ReservedNameError matches with errors.Is:
// the request names something only the CA itself may hold. Nothing is
// signed.
var ErrReservedName = errors.New("issuer: name reserved for the CA")

// Checks named by ReservedNameError.Check.
const (
	// CheckReservedSPIFFEID: the SPIFFE ID is under spiffe://<td>/ca/.
	CheckReservedSPIFFEID = "ca_reserved_spiffe_id"
	// CheckReservedDNSName: a DNS name is one of the CA's host names.
	CheckReservedDNSName = "ca_reserved_dns_name"
	// CheckReservedIP: an IP address is one of the CA's addresses.
	CheckReservedIP = "ca_reserved_ip"
	// CheckServerIdentity: a CA server request names another identity.
	CheckServerIdentity = "ca_server_identity"
	// CheckAuthzPolicyIdentity: an authorization-policy signing request
	// names another identity, or names DNS names or IP addresses.
	CheckAuthzPolicyIdentity = "ca_authz_policy_identity"
)

// ReservedNameError is a refusal to put one of the CA's own names into a
// workload's certificate. Check is one of the Check* constants above, Name
// the offending name. Its text is safe to show to the requester.
type ReservedNameError struct {
	Check string
	Name  string
}

func (e *ReservedNameError) Error() string {
	switch e.Check {
	case CheckReservedSPIFFEID:
		return fmt.Sprintf("the SPIFFE ID %q is under the CA's own /ca/ path, which no workload may hold", e.Name)
	case CheckReservedIP:
		return fmt.Sprintf("the IP address %s is the CA's own, which no workload may hold", e.Name)
	case CheckServerIdentity:
		return fmt.Sprintf("the CA's server certificate must name %s", e.Name)
	case CheckAuthzPolicyIdentity:
		return fmt.Sprintf("the CA's authorization-policy signing certificate must name only %s", e.Name)
	}
	return fmt.Sprintf("the DNS name %q is the CA's own host name, which no workload may hold", e.Name)
}

// Is makes errors.Is(err, ErrReservedName) true, and errors.Is(err,
// ErrInvalidRequest): nothing was signed, and logs and metrics count it as
// a refused request.
func (e *ReservedNameError) Is(target error) bool {
	return target == ErrReservedName || target == ErrInvalidRequest
}

// ServerSPIFFEID is the SPIFFE ID of the CA's API server in trust domain
// td: spiffe://<td>/ca/server. `ca` clients require it of the API listener.
func ServerSPIFFEID(td string) string { return "spiffe://" + td + "/ca/server" }

// AuthzPolicySPIFFEID is the SPIFFE ID of the CA's authorization-policy
// signing certificate in trust domain td: spiffe://<td>/ca/authz-policy.
// Services verifying GET /v1/authz/policy require it of the JWS's x5c leaf.
func AuthzPolicySPIFFEID(td string) string { return "spiffe://" + td + "/ca/authz-policy" }

// ReservedSPIFFEPrefix is the path prefix of the CA's own identities in
// trust domain td: spiffe://<td>/ca/.
func ReservedSPIFFEPrefix(td string) string { return "spiffe://" + td + "/ca/" }

// normalizeReserved lowercases the reserved DNS names and drops empty and
// duplicate entries; it is applied by Config.Validate.
func normalizeReserved(c *Config) {
	seen := map[string]bool{}
	var names []string
	for _, n := range c.ReservedDNSNames {
		n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		names = append(names, n)
	}
	c.ReservedDNSNames = names
}

// checkReserved refuses a workload request (v.CAServer false) that names the
// CA's SPIFFE ID prefix, one of its host names or one of its IP addresses,
// and a CA server request whose SPIFFE ID is not ServerSPIFFEID. v is
// already validated (DNS names lowercased, IPv4 addresses 4 bytes).
func (i *Issuer) checkReserved(v validRequest) error {
	td := i.cfg.TrustDomain
	if v.CAAuthzPolicy {
		if v.CAServer || v.SPIFFEID != AuthzPolicySPIFFEID(td) || len(v.DNSNames) > 0 || len(v.IPAddresses) > 0 {
			return &ReservedNameError{Check: CheckAuthzPolicyIdentity, Name: AuthzPolicySPIFFEID(td)}
		}
		return nil
	}
	if v.CAServer {
		if v.SPIFFEID != ServerSPIFFEID(td) {
			return &ReservedNameError{Check: CheckServerIdentity, Name: ServerSPIFFEID(td)}
		}
		return nil
	}
	if strings.HasPrefix(v.SPIFFEID, ReservedSPIFFEPrefix(td)) {
		return &ReservedNameError{Check: CheckReservedSPIFFEID, Name: v.SPIFFEID}
	}
	for _, n := range v.DNSNames {
		for _, r := range i.cfg.ReservedDNSNames {
			if n == r {
				return &ReservedNameError{Check: CheckReservedDNSName, Name: n}
			}
		}
	}
	for _, ip := range v.IPAddresses {
		for _, r := range i.cfg.ReservedIPs {
			if ip.Equal(r) {
				return &ReservedNameError{Check: CheckReservedIP, Name: ip.String()}
			}
		}
		// A workload never gets a loopback or unspecified address: the CA's
		// listeners answer there in every setup.
		if ip.IsLoopback() || ip.IsUnspecified() {
			return &ReservedNameError{Check: CheckReservedIP, Name: ip.String()}
		}
	}
	return nil
}
