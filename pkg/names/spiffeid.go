package names

import "fmt"

// MaxSPIFFEIDBytes is the longest SPIFFE ID accepted (the SPIFFE ID spec's
// limit on a URI's length).
const MaxSPIFFEIDBytes = 2048

const spiffeScheme = "spiffe://"

// tooLong is the fault of an over-long ID, formatted once.
var tooLong = fmt.Sprintf("longer than %d bytes", MaxSPIFFEIDBytes)

// SplitSPIFFEID reports whether id is a SPIFFE ID, and returns its trust
// domain and its path ("" for the trust domain's own ID, otherwise starting
// with "/"). The syntax is the SPIFFE ID spec's, as go-spiffe's spiffeid
// package reads it: the scheme "spiffe://" in lower case; a non-empty trust
// domain of lower-case letters, digits, '.', '-' and '_' (so no user info,
// port or upper case); path segments of letters, digits, '.', '-' and '_'
// that are neither empty nor "." or ".." (so no trailing slash,
// percent-encoding, query or fragment); at most MaxSPIFFEIDBytes in all.
// Whether the ID is in the right trust domain, and whether it needs a path,
// is the caller's rule. The error says what is wrong; it carries nothing
// secret.
//
// Written here rather than calling go-spiffe's spiffeid.FromString: the
// authorization layer checks a peer's ID on every request, where go-spiffe's
// parse allocates, and the errors here name the offending character for the
// problem answers. FuzzSplitSPIFFEID holds both to the same accept/reject
// answer.
func SplitSPIFFEID(id string) (td, path string, err error) {
	td, path, f := splitSPIFFEID(id)
	if f.why != "" {
		if f.hasChar {
			return "", "", fmt.Errorf("SPIFFE ID %s %q", f.why, f.char)
		}
		return "", "", fmt.Errorf("SPIFFE ID %s", f.why)
	}
	return td, path, nil
}

// SPIFFEIDParts is SplitSPIFFEID without the error, and without allocating:
// for checks on every request.
func SPIFFEIDParts(id string) (td, path string, ok bool) {
	td, path, f := splitSPIFFEID(id)
	return td, path, f.why == ""
}

// idFault is what splitSPIFFEID found wrong; the zero value is nothing.
type idFault struct {
	why     string
	char    byte
	hasChar bool
}

func splitSPIFFEID(id string) (td, path string, f idFault) {
	switch {
	case id == "":
		return "", "", idFault{why: "is required"}
	case len(id) > MaxSPIFFEIDBytes:
		return "", "", idFault{why: tooLong}
	case len(id) < len(spiffeScheme) || id[:len(spiffeScheme)] != spiffeScheme:
		return "", "", idFault{why: "must start with " + spiffeScheme}
	}
	rest := id[len(spiffeScheme):]
	td, path = rest, ""
	for i := 0; i < len(rest); i++ {
		if rest[i] == '/' {
			td, path = rest[:i], rest[i:]
			break
		}
	}
	if td == "" {
		return "", "", idFault{why: "has no trust domain"}
	}
	for j := 0; j < len(td); j++ {
		if c := td[j]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", "", idFault{why: "trust domain has character", char: c, hasChar: true}
		}
	}
	// path is "" or starts with "/"; check each segment.
	seg := 0
	for j := 1; j <= len(path); j++ {
		if j == len(path) || path[j] == '/' {
			switch path[seg+1 : j] {
			case "":
				return "", "", idFault{why: "has an empty path segment"}
			case ".", "..":
				return "", "", idFault{why: "has a dot path segment"}
			}
			seg = j
			continue
		}
		if c := path[j]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", "", idFault{why: "path has character", char: c, hasChar: true}
		}
	}
	return td, path, idFault{}
}
