package authz

import (
	"fmt"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/names"
)

// allowList is an endpoint's `allow`: exact SPIFFE IDs and path prefixes
// ("spiffe://td/prod/*" allows every ID under spiffe://td/prod/, and
// "spiffe://td/*" every ID of the trust domain except the trust domain's own).
type allowList struct {
	exact    map[string]struct{}
	prefixes []string // each ends with "/"
}

func parseAllow(entries []string) (allowList, error) {
	a := allowList{exact: map[string]struct{}{}}
	for _, e := range entries {
		if base, ok := strings.CutSuffix(e, "/*"); ok {
			if _, _, ok := names.SPIFFEIDParts(base); !ok {
				return a, fmt.Errorf("allow %q: not a SPIFFE ID or SPIFFE ID prefix ending in /*", e)
			}
			a.prefixes = append(a.prefixes, base+"/")
			continue
		}
		if _, _, ok := names.SPIFFEIDParts(e); !ok {
			return a, fmt.Errorf("allow %q: not a SPIFFE ID or SPIFFE ID prefix ending in /*", e)
		}
		a.exact[e] = struct{}{}
	}
	return a, nil
}

// allows reports whether the (already validated) source is in the list.
func (a *allowList) allows(source string) bool {
	if _, ok := a.exact[source]; ok {
		return true
	}
	for _, p := range a.prefixes {
		if underPrefix(p, source) {
			return true
		}
	}
	return false
}

// underPrefix tells whether source lies strictly below prefix, which ends
// with "/": what an allow entry ending in /* grants.
func underPrefix(prefix, source string) bool {
	return len(source) > len(prefix) && strings.HasPrefix(source, prefix)
}

// AllowEntryMatches tells whether one allow entry as written in a policy (an
// exact SPIFFE ID, or a prefix ending in /*) names source: the rule Decide
// applies, for readers of a policy such as the dashboard.
func AllowEntryMatches(entry, source string) bool {
	if base, ok := strings.CutSuffix(entry, "/*"); ok {
		return underPrefix(base+"/", source)
	}
	return entry == source
}
