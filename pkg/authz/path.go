package authz

import (
	"errors"
	"fmt"
	"strings"
)

// MaxPathBytes bounds the length of a request path Decide accepts; a longer
// path does not normalise.
const MaxPathBytes = 4096

// maxPatternSegments bounds the number of segments in one policy path.
const maxPatternSegments = 64

// errPathInvalid is returned by normalizePath for a path it refuses.
var errPathInvalid = errors.New("path does not normalise")

// NormalizePath returns the canonical form of a raw (still percent-encoded)
// request path, as Decide matches it: percent-decoded exactly once, one
// trailing slash dropped ("/v1/refunds/" is "/v1/refunds"). It refuses, with
// an error, instead of cleaning: a path not starting with "/", an empty
// segment ("//"), a "." or ".." segment (also when percent-encoded), a
// malformed or incomplete %-escape, a backslash, a NUL or other control
// character after decoding, and paths longer than MaxPathBytes. Refusing
// rather than cleaning means the service and the policy can never disagree on
// which resource a path names.
func NormalizePath(raw string) (string, error) {
	segs, err := splitPath(raw, nil)
	if err != nil {
		return "", err
	}
	if len(segs) == 0 {
		return "/", nil
	}
	return "/" + strings.Join(segs, "/"), nil
}

// splitPath normalises raw into its decoded segments, appended to buf. The
// root path "/" has no segments.
func splitPath(raw string, buf []string) ([]string, error) {
	if len(raw) == 0 || raw[0] != '/' || len(raw) > MaxPathBytes {
		return nil, errPathInvalid
	}
	rest := raw[1:]
	if rest == "" {
		return buf, nil
	}
	// One trailing slash is dropped; "//" anywhere (including the end) is an
	// empty segment and refused below.
	if strings.HasSuffix(rest, "/") {
		rest = rest[:len(rest)-1]
		if rest == "" || strings.HasSuffix(rest, "/") {
			return nil, errPathInvalid
		}
	}
	for {
		i := strings.IndexByte(rest, '/')
		seg := rest
		if i >= 0 {
			seg = rest[:i]
		}
		dec, err := decodeSegment(seg)
		if err != nil {
			return nil, err
		}
		buf = append(buf, dec)
		if i < 0 {
			return buf, nil
		}
		rest = rest[i+1:]
	}
}

// decodeSegment percent-decodes one raw segment once and validates the
// result. A decoded "/" (%2F) is refused: it would make the policy see one
// segment where a router that decodes first sees two.
func decodeSegment(seg string) (string, error) {
	if seg == "" {
		return "", errPathInvalid
	}
	if strings.IndexByte(seg, '%') < 0 {
		if err := checkSegment(seg); err != nil {
			return "", err
		}
		return seg, nil
	}
	var b strings.Builder
	b.Grow(len(seg))
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(seg) || !ishex(seg[i+1]) || !ishex(seg[i+2]) {
			return "", errPathInvalid
		}
		b.WriteByte(unhex(seg[i+1])<<4 | unhex(seg[i+2]))
		i += 2
	}
	dec := b.String()
	if strings.IndexByte(dec, '/') >= 0 {
		return "", errPathInvalid
	}
	if err := checkSegment(dec); err != nil {
		return "", err
	}
	return dec, nil
}

func checkSegment(s string) error {
	if s == "" || s == "." || s == ".." {
		return errPathInvalid
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '\\' {
			return errPathInvalid
		}
	}
	return nil
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// parsePattern validates a policy path: "/" or "/seg/seg...", each segment a
// literal, "*" (exactly one segment) or, only as the last segment, "**" (any
// number of further segments, including none). Literal segments are matched
// against decoded request segments, so they must themselves be valid decoded
// segments and may not contain "*" or "%".
func parsePattern(p string) ([]string, error) {
	if p == "" || p[0] != '/' {
		return nil, fmt.Errorf("path %q must start with /", p)
	}
	if p == "/" {
		return nil, nil
	}
	if strings.HasSuffix(p, "/") {
		return nil, fmt.Errorf("path %q must not end with /", p)
	}
	segs := strings.Split(p[1:], "/")
	if len(segs) > maxPatternSegments {
		return nil, fmt.Errorf("path %q has more than %d segments", p, maxPatternSegments)
	}
	for i, s := range segs {
		switch {
		case s == "*":
		case s == "**":
			if i != len(segs)-1 {
				return nil, fmt.Errorf("path %q: ** only as the last segment", p)
			}
		case strings.ContainsAny(s, "*%"):
			return nil, fmt.Errorf("path %q: segment %q mixes * or %% with text (use * for a whole segment)", p, s)
		default:
			if checkSegment(s) != nil {
				return nil, fmt.Errorf("path %q: segment %q is empty, . or .., or has a control character or backslash", p, s)
			}
		}
	}
	return segs, nil
}

// trie matches normalised request segments against every path of every
// endpoint of one service. Each node lists the endpoints whose path ends
// there (exact) and those whose path ends there with "/**" (rest).
type trie struct {
	root *trieNode
}

type trieNode struct {
	lit   map[string]*trieNode
	star  *trieNode
	exact []int // endpoint indexes, ascending, no duplicates
	rest  []int
}

func newTrie() *trie { return &trie{root: &trieNode{}} }

func (t *trie) insert(segs []string, ep int) {
	n := t.root
	for _, s := range segs {
		switch s {
		case "**":
			n.rest = addIndex(n.rest, ep)
			return
		case "*":
			if n.star == nil {
				n.star = &trieNode{}
			}
			n = n.star
		default:
			if n.lit == nil {
				n.lit = map[string]*trieNode{}
			}
			c := n.lit[s]
			if c == nil {
				c = &trieNode{}
				n.lit[s] = c
			}
			n = c
		}
	}
	n.exact = addIndex(n.exact, ep)
}

func addIndex(xs []int, ep int) []int {
	for _, x := range xs {
		if x == ep {
			return xs
		}
	}
	return append(xs, ep)
}

// match sets, in set, the endpoints that have a path matching segs. The walk
// follows the literal child and the * child at each level, so its cost is
// bounded by the number of distinct pattern shapes, not by the number of
// endpoints.
func (t *trie) match(segs []string, set *bitset) {
	matchNode(t.root, segs, set)
}

func matchNode(n *trieNode, segs []string, set *bitset) {
	for _, ep := range n.rest {
		set.add(ep)
	}
	if len(segs) == 0 {
		for _, ep := range n.exact {
			set.add(ep)
		}
		return
	}
	if n.lit != nil {
		if c := n.lit[segs[0]]; c != nil {
			matchNode(c, segs[1:], set)
		}
	}
	if n.star != nil {
		matchNode(n.star, segs[1:], set)
	}
}

// bitset is a small set of endpoint indexes; the first 128 live inline so a
// typical decision does not allocate.
type bitset struct {
	inline [2]uint64
	more   []uint64
}

func (b *bitset) add(i int) {
	w := i / 64
	if w < len(b.inline) {
		b.inline[w] |= 1 << (uint(i) % 64)
		return
	}
	w -= len(b.inline)
	for len(b.more) <= w {
		b.more = append(b.more, 0)
	}
	b.more[w] |= 1 << (uint(i) % 64)
}

func (b *bitset) has(i int) bool {
	w := i / 64
	if w < len(b.inline) {
		return b.inline[w]&(1<<(uint(i)%64)) != 0
	}
	w -= len(b.inline)
	return w < len(b.more) && b.more[w]&(1<<(uint(i)%64)) != 0
}

func (b *bitset) empty() bool {
	if b.inline[0] != 0 || b.inline[1] != 0 {
		return false
	}
	for _, w := range b.more {
		if w != 0 {
			return false
		}
	}
	return true
}
