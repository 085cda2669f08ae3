package policy

// Identity templates are deliberately not text/template: a template here may
// only copy a claim value into a name, so the parser accepts literal text and
// `{{claims.<path>}}` placeholders and nothing else -- no functions, pipes,
// conditionals or method calls for a policy author (or a claim) to abuse. A
// path is a dotted list of identifiers, and a segment whose key is not an
// identifier (Kubernetes' `kubernetes.io`) is written as in CEL:
// `{{claims["kubernetes.io"].namespace}}`.
//
// In a SPIFFE ID a placeholder is exactly one path segment: its value may not
// contain '/' (nor be "." or ".."), so that two placeholders cannot splice
// the same identity out of different claims (owner "a/b" + repo "c" versus
// owner "a" + repo "b/c"). A placeholder may span segments only when the
// rule says so with the one modifier there is, `|path`:
// `{{claims.repository|path}}` takes "acme/payments" as two segments. A
// spiffe_id has at most one such placeholder, and DNS names none; and no two
// placeholders of a spiffe_id may share a path segment.

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// errClaimValue is wrapped when a claim cannot be used in a name: it is
// missing, not a string or integer, or contains characters the name kind does
// not allow.
var errClaimValue = errors.New("claim value not usable in identity")

// maxClaimValueBytes bounds one substituted value.
const maxClaimValueBytes = 255

type tmplPart struct {
	literal string
	path    []string // nil for a literal part
	// multi marks a placeholder written {{claims.x|path}}: its value may
	// span several SPIFFE ID path segments.
	multi bool
}

// pathModifier is the placeholder modifier that lets a value span segments.
const pathModifier = "path"

type template struct {
	source string
	parts  []tmplPart
}

// parseTemplate splits src into literal parts and claim placeholders.
func parseTemplate(src string) (*template, error) {
	t := &template{source: src}
	rest := src
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if strings.Contains(rest, "}}") {
				return nil, fmt.Errorf("template %q: unmatched }}", src)
			}
			t.parts = append(t.parts, tmplPart{literal: rest})
			break
		}
		if i > 0 {
			if strings.Contains(rest[:i], "}}") {
				return nil, fmt.Errorf("template %q: unmatched }}", src)
			}
			t.parts = append(t.parts, tmplPart{literal: rest[:i]})
		}
		rest = rest[i+2:]
		j := strings.Index(rest, "}}")
		if j < 0 {
			return nil, fmt.Errorf("template %q: unterminated {{", src)
		}
		expr, mod, hasMod := strings.Cut(rest[:j], "|")
		if hasMod && strings.TrimSpace(mod) != pathModifier {
			return nil, fmt.Errorf("template %q: placeholder modifier %q is unknown; the only one is |%s", src, strings.TrimSpace(mod), pathModifier)
		}
		path, err := parseClaimPath(strings.TrimSpace(expr))
		if err != nil {
			return nil, fmt.Errorf("template %q: %w", src, err)
		}
		t.parts = append(t.parts, tmplPart{path: path, multi: hasMod})
		rest = rest[j+2:]
	}
	return t, nil
}

// parseClaimPath parses `claims.a.b["c.d"].e` into [a b c.d e].
func parseClaimPath(s string) ([]string, error) {
	const root = "claims"
	if !strings.HasPrefix(s, root) {
		return nil, fmt.Errorf("placeholder %q must start with %q", s, root)
	}
	s = s[len(root):]
	var path []string
	for s != "" {
		switch s[0] {
		case '.':
			n := 1
			for n < len(s) && isIdentByte(s[n], n == 1) {
				n++
			}
			if n == 1 {
				return nil, fmt.Errorf("placeholder: empty or invalid field name after '.'")
			}
			path = append(path, s[1:n])
			s = s[n:]
		case '[':
			end := strings.Index(s, "\"]")
			if len(s) < 2 || s[1] != '"' || end < 2 {
				return nil, fmt.Errorf("placeholder: index must be [\"key\"]")
			}
			key := s[2:end]
			if key == "" || strings.ContainsAny(key, "\"\\[]{}") {
				return nil, fmt.Errorf("placeholder: invalid key %q", key)
			}
			path = append(path, key)
			s = s[end+2:]
		default:
			return nil, fmt.Errorf("placeholder: unexpected %q; only claims.<path> is allowed", s)
		}
	}
	if len(path) == 0 || len(path) > 8 {
		return nil, fmt.Errorf("placeholder: claim path must have 1 to 8 segments")
	}
	return path, nil
}

func isIdentByte(c byte, first bool) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' {
		return true
	}
	return !first && c >= '0' && c <= '9'
}

// sharedSegment reports whether two placeholders share one path segment of
// the template (no literal '/' between them): their values could then be
// split differently and splice one name out of different claims ("a-b" +
// "c" or "a" + "b-c" around a literal '-'), whatever each may contain.
func (t *template) sharedSegment() bool {
	inSegment := false
	for _, p := range t.parts {
		if p.path == nil {
			if strings.Contains(p.literal, "/") {
				inSegment = false
			}
			continue
		}
		if inSegment {
			return true
		}
		inSegment = true
	}
	return false
}

// multiSegment counts the placeholders marked |path.
func (t *template) multiSegment() int {
	n := 0
	for _, p := range t.parts {
		if p.multi {
			n++
		}
	}
	return n
}

// render fills the template from claims; check vets every substituted value
// (with whether its placeholder is marked |path) before it is spliced in.
func (t *template) render(claims map[string]any, check func(v string, multi bool) error) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.path == nil {
			b.WriteString(p.literal)
			continue
		}
		v, err := claimString(claims, p.path)
		if err != nil {
			return "", err
		}
		if err := check(v, p.multi); err != nil {
			return "", fmt.Errorf("%w: claims.%s: %w", errClaimValue, strings.Join(p.path, "."), err)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// claimString looks up a claim and renders a string or integral number.
func claimString(claims map[string]any, path []string) (string, error) {
	var cur any = claims
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", fmt.Errorf("%w: claims.%s is missing", errClaimValue, strings.Join(path, "."))
		}
		if cur, ok = m[k]; !ok {
			return "", fmt.Errorf("%w: claims.%s is missing", errClaimValue, strings.Join(path, "."))
		}
	}
	switch v := cur.(type) {
	case string:
		if v == "" {
			return "", fmt.Errorf("%w: claims.%s is empty", errClaimValue, strings.Join(path, "."))
		}
		if len(v) > maxClaimValueBytes {
			return "", fmt.Errorf("%w: claims.%s is longer than %d bytes", errClaimValue, strings.Join(path, "."), maxClaimValueBytes)
		}
		return v, nil
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.FormatInt(int64(v), 10), nil
		}
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	}
	return "", fmt.Errorf("%w: claims.%s is not a string or integer", errClaimValue, strings.Join(path, "."))
}

// errNotOneSegment is wrapped when a placeholder that is one SPIFFE ID path
// segment gets a value with '/', or "." or "..".
var errNotOneSegment = errors.New("the placeholder is one path segment")

// checkPathValue vets a value spliced into a SPIFFE ID path. Unless multi
// (the placeholder is marked |path) it must be one segment: no '/', and not
// "." or "..". With multi it may span several segments ("acme/payments"),
// every one of them non-empty and not "." or "..". Every segment is made of
// the SPIFFE path characters [a-zA-Z0-9._-], which excludes percent-encoding,
// '?', '#', ':' and anything that could start a second URI.
func checkPathValue(v string, multi bool) error {
	if !multi {
		switch {
		case strings.Contains(v, "/"):
			return fmt.Errorf("%w, but the value contains '/' (write the placeholder {{claims.<path>|path}} to let it span segments)", errNotOneSegment)
		case v == "." || v == "..":
			return fmt.Errorf("%w, but the value is a dot segment", errNotOneSegment)
		}
	}
	for _, seg := range strings.Split(v, "/") {
		switch seg {
		case "":
			return errors.New("empty path segment")
		case ".", "..":
			return errors.New("dot segment")
		}
		for _, c := range []byte(seg) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("character %q not allowed in a SPIFFE ID path", c)
			}
		}
	}
	return nil
}

// checkLabelValue vets a value spliced into a DNS name: exactly one label of
// letters, digits and hyphens, so a claim can never add or remove labels.
func checkLabelValue(v string, _ bool) error {
	if len(v) > 63 {
		return errors.New("longer than a DNS label")
	}
	for _, c := range []byte(v) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("character %q not allowed in a DNS label", c)
		}
	}
	return nil
}
