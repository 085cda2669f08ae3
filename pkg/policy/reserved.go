package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The CA's own names are not for workloads: `ca` clients recognise the CA's
// API listener by its host name and its SPIFFE ID spiffe://<td>/ca/server,
// so a rule that granted either would let a workload pose as the CA. The
// issuer refuses them at issuance whatever the policy says; a policy whose
// rules visibly grant them is refused when it loads.

// ErrReservedName is what a policy that grants one of the CA's own names
// fails with (errors.Is), at load (spiffe_id under /ca/) or from
// CheckReservedDNSNames.
var ErrReservedName = errors.New("policy grants a name reserved for the CA")

// checkReservedSPIFFEID refuses a spiffe_id template whose literal prefix is
// spiffe://<td>/ca/ (or which is exactly spiffe://<td>/ca).
func checkReservedSPIFFEID(t *template, td string) error {
	prefix := "spiffe://" + td + "/ca/"
	first := t.parts[0]
	if first.path != nil {
		return nil
	}
	whole := len(t.parts) == 1
	if strings.HasPrefix(first.literal, prefix) || (whole && first.literal == strings.TrimSuffix(prefix, "/")) {
		return fmt.Errorf("%w: spiffe_id %q is under %s, the CA's own identities (its API server is %sserver); no workload may hold them",
			ErrReservedName, t.source, prefix, prefix)
	}
	return nil
}

// CheckReservedDNSNames returns an error (matching ErrReservedName) naming
// the first rule whose dns_names has a literal entry (no placeholder) equal,
// ignoring case and a trailing dot, to one of hosts: the CA's own host
// names. Entries with placeholders are checked at issuance instead.
func (p *Policy) CheckReservedDNSNames(hosts []string) error {
	reserved := map[string]bool{}
	for _, h := range hosts {
		if h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), "."); h != "" {
			reserved[h] = true
		}
	}
	for _, r := range p.rules {
		for _, t := range r.dnsNames {
			if len(t.parts) != 1 || t.parts[0].path != nil {
				continue
			}
			n := strings.TrimSuffix(strings.ToLower(t.parts[0].literal), ".")
			if reserved[n] {
				return fmt.Errorf("%w: rule %q: dns_names entry %q is one of the CA's own host names (%s); no workload may hold it",
					ErrReservedName, r.name, t.source, strings.Join(sortedKeys(reserved), ", "))
			}
		}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
