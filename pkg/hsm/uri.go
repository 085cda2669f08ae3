package hsm

import (
	"fmt"
	"strings"
)

// pkcs11URI is the part of an RFC 7512 PKCS#11 URI this package acts on: the
// token it names and the key's label (object) and CKA_ID (id). Attributes
// that only describe the module, slot or token (manufacturer, model, serial,
// library-*, slot-*) are accepted and ignored; so are the module-name and
// module-path query attributes, because the module comes from configuration.
type pkcs11URI struct {
	Token     string
	HasToken  bool
	Object    string
	HasObject bool
	ID        []byte
	HasID     bool
}

const pkcs11Scheme = "pkcs11:"

// Character classes of RFC 7512 section 2.3.
const (
	uriUnreserved    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
	uriResAvail      = ":[]@!$'()*+,="
	uriPathResAvail  = uriResAvail + "&"
	uriQueryResAvail = uriResAvail + "/?|"
)

// ignoredPathAttrs are RFC 7512 path attributes that select a module, slot or
// token by description; the store is already bound to one token, so they are
// accepted without being checked.
var ignoredPathAttrs = map[string]bool{
	"manufacturer": true, "model": true, "serial": true,
	"library-manufacturer": true, "library-description": true, "library-version": true,
	"slot-manufacturer": true, "slot-description": true, "slot-id": true,
}

// parsePKCS11URI parses an RFC 7512 URI. It fails with ErrBadURI on syntax
// errors, repeated attributes, unknown attributes, a type other than
// "private", a pin-value query attribute (PINs come from configuration, never
// from key URIs), or a URI naming neither object nor id.
func parsePKCS11URI(s string) (pkcs11URI, error) {
	var u pkcs11URI
	if len(s) < len(pkcs11Scheme) || !strings.EqualFold(s[:len(pkcs11Scheme)], pkcs11Scheme) {
		return u, fmt.Errorf("%w: not a pkcs11: URI", ErrBadURI)
	}
	rest := s[len(pkcs11Scheme):]
	path, query, hasQuery := strings.Cut(rest, "?")
	seen := map[string]bool{}
	if path != "" {
		for _, attr := range strings.Split(path, ";") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || !validAttrName(name) {
				return u, fmt.Errorf("%w: path attribute %q is not name=value", ErrBadURI, attr)
			}
			if seen[name] {
				return u, fmt.Errorf("%w: path attribute %q repeated", ErrBadURI, name)
			}
			seen[name] = true
			val, err := pctDecode(raw, uriPathResAvail)
			if err != nil {
				return u, fmt.Errorf("%w: attribute %q: %w", ErrBadURI, name, err)
			}
			switch {
			case name == "token":
				u.Token, u.HasToken = string(val), true
			case name == "object":
				u.Object, u.HasObject = string(val), true
			case name == "id":
				u.ID, u.HasID = val, true
			case name == "type":
				if string(val) != "private" {
					return u, fmt.Errorf("%w: type=%q, only private keys can be found", ErrBadURI, val)
				}
			case ignoredPathAttrs[name], strings.HasPrefix(name, "x-"):
			default:
				return u, fmt.Errorf("%w: unknown path attribute %q", ErrBadURI, name)
			}
		}
	}
	if hasQuery && query != "" {
		qseen := map[string]bool{}
		for _, attr := range strings.Split(query, "&") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok || !validAttrName(name) {
				return u, fmt.Errorf("%w: query attribute %q is not name=value", ErrBadURI, attr)
			}
			if qseen[name] {
				return u, fmt.Errorf("%w: query attribute %q repeated", ErrBadURI, name)
			}
			qseen[name] = true
			if _, err := pctDecode(raw, uriQueryResAvail); err != nil {
				return u, fmt.Errorf("%w: query attribute %q: %w", ErrBadURI, name, err)
			}
			switch {
			case name == "pin-value":
				return u, fmt.Errorf("%w: pin-value is not accepted in key URIs; the PIN comes from configuration", ErrBadURI)
			case name == "pin-source", name == "module-name", name == "module-path", strings.HasPrefix(name, "x-"):
			default:
				return u, fmt.Errorf("%w: unknown query attribute %q", ErrBadURI, name)
			}
		}
	}
	if !u.HasObject && !u.HasID {
		return u, fmt.Errorf("%w: URI names neither object nor id", ErrBadURI)
	}
	if u.HasObject && u.Object == "" || u.HasID && len(u.ID) == 0 {
		return u, fmt.Errorf("%w: empty object or id", ErrBadURI)
	}
	return u, nil
}

// String formats u as an RFC 7512 URI: token, object and id, in that order,
// each value percent-encoded where the RFC requires it (id always, since it is
// binary).
func (u pkcs11URI) String() string {
	var b strings.Builder
	b.WriteString(pkcs11Scheme)
	sep := ""
	if u.HasToken {
		b.WriteString("token=" + pctEncode([]byte(u.Token), uriPathResAvail))
		sep = ";"
	}
	if u.HasObject {
		b.WriteString(sep + "object=" + pctEncode([]byte(u.Object), uriPathResAvail))
		sep = ";"
	}
	if u.HasID {
		b.WriteString(sep + "id=")
		for _, c := range u.ID {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func validAttrName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// pctEncode percent-encodes every byte that is neither unreserved nor in
// extra, with upper-case hex digits as RFC 3986 recommends.
func pctEncode(v []byte, extra string) string {
	var b strings.Builder
	for _, c := range v {
		if strings.IndexByte(uriUnreserved, c) >= 0 || strings.IndexByte(extra, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// pctDecode decodes a percent-encoded attribute value, refusing characters
// outside unreserved, extra and well-formed %XY escapes.
func pctDecode(s, extra string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("truncated escape at offset %d", i)
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("bad escape at offset %d", i)
			}
			out = append(out, hi<<4|lo)
			i += 2
		case strings.IndexByte(uriUnreserved, c) >= 0 || strings.IndexByte(extra, c) >= 0:
			out = append(out, c)
		default:
			return nil, fmt.Errorf("character %q at offset %d must be percent-encoded", c, i)
		}
	}
	return out, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// softkeyScheme prefixes the URIs of the software key store.
const softkeyScheme = "softkey:"

// parseSoftkeyURI returns the key name in a softkey:<name> URI, or ErrBadURI.
func parseSoftkeyURI(s string) (string, error) {
	name, ok := strings.CutPrefix(s, softkeyScheme)
	if !ok {
		return "", fmt.Errorf("%w: not a softkey: URI", ErrBadURI)
	}
	if err := validateName(name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadURI, err)
	}
	return name, nil
}
