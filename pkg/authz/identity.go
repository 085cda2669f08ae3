package authz

import (
	"fmt"
	"strings"
)

const spiffeScheme = "spiffe://"

// splitID checks that id is a well-formed SPIFFE ID (lower-case trust domain
// of [a-z0-9.-_], a path of segments of [A-Za-z0-9.-_], no empty, "." or ".."
// segment, no query or fragment) and returns its trust domain and path ("" for
// the trust domain's own ID). It does not allocate.
func splitID(id string) (td, path string, ok bool) {
	if !strings.HasPrefix(id, spiffeScheme) || len(id) > 2048 {
		return "", "", false
	}
	rest := id[len(spiffeScheme):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		td, path = rest, ""
	} else {
		td, path = rest[:i], rest[i:]
	}
	if td == "" {
		return "", "", false
	}
	for j := 0; j < len(td); j++ {
		c := td[j]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", "", false
		}
	}
	if path == "" {
		return td, "", true
	}
	// path starts with "/"; check each segment.
	seg := 0
	for j := 1; j <= len(path); j++ {
		if j == len(path) || path[j] == '/' {
			s := path[seg+1 : j]
			if s == "" || s == "." || s == ".." {
				return "", "", false
			}
			seg = j
			continue
		}
		c := path[j]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", "", false
		}
	}
	return td, path, true
}

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
			if _, _, ok := splitID(base); !ok {
				return a, fmt.Errorf("allow %q: not a SPIFFE ID or SPIFFE ID prefix ending in /*", e)
			}
			a.prefixes = append(a.prefixes, base+"/")
			continue
		}
		if _, _, ok := splitID(e); !ok {
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
