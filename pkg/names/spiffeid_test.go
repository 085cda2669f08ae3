package names

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestSPIFFEIDSyntax(t *testing.T) {
	tests := []struct {
		name, id, td, path, err string
	}{
		{"a workload ID splits into trust domain and path", "spiffe://example.org/prod/payments", "example.org", "/prod/payments", ""},
		{"path segments may use upper case, digits, '.', '-' and '_'", "spiffe://example.org/A/b.c-d_e/9", "example.org", "/A/b.c-d_e/9", ""},
		{"the trust domain's own ID has an empty path", "spiffe://example.org", "example.org", "", ""},
		{"a trust domain may use digits, '.', '-' and '_'", "spiffe://td_1-a.example/x", "td_1-a.example", "/x", ""},
		{"an empty ID is refused", "", "", "", "SPIFFE ID is required"},
		{"an ID of MaxSPIFFEIDBytes is accepted", "spiffe://example.org/" + strings.Repeat("a", MaxSPIFFEIDBytes-len("spiffe://example.org/")), "example.org", "/" + strings.Repeat("a", MaxSPIFFEIDBytes-len("spiffe://example.org/")), ""},
		{"an ID longer than MaxSPIFFEIDBytes is refused", "spiffe://example.org/" + strings.Repeat("a", MaxSPIFFEIDBytes), "", "", "SPIFFE ID longer than 2048 bytes"},
		{"another scheme is refused", "https://example.org/a", "", "", "must start with spiffe://"},
		{"an upper-case scheme is refused", "SPIFFE://example.org/a", "", "", "must start with spiffe://"},
		{"an empty trust domain is refused", "spiffe:///a", "", "", "has no trust domain"},
		{"an upper-case trust domain is refused", "spiffe://Example.org/a", "", "", `trust domain has character 'E'`},
		{"a port is refused", "spiffe://example.org:8443/a", "", "", `trust domain has character ':'`},
		{"user info is refused", "spiffe://u@example.org/a", "", "", `trust domain has character '@'`},
		{"a trailing slash is refused", "spiffe://example.org/a/", "", "", "empty path segment"},
		{"the root path alone is refused", "spiffe://example.org/", "", "", "empty path segment"},
		{"an empty segment is refused", "spiffe://example.org/a//b", "", "", "empty path segment"},
		{"a dot segment is refused", "spiffe://example.org/a/./b", "", "", "dot path segment"},
		{"a dot-dot segment is refused", "spiffe://example.org/a/../b", "", "", "dot path segment"},
		{"percent-encoding is refused", "spiffe://example.org/a%2fb", "", "", `path has character '%'`},
		{"a query is refused", "spiffe://example.org/a?q=1", "", "", `path has character '?'`},
		{"a fragment is refused", "spiffe://example.org/a#f", "", "", `path has character '#'`},
		{"a query on the trust domain is refused", "spiffe://example.org?q", "", "", `trust domain has character '?'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td, path, err := SplitSPIFFEID(tt.id)
			if tt.err == "" {
				if err != nil || td != tt.td || path != tt.path {
					t.Fatalf("SplitSPIFFEID = %q, %q, %v; want %q, %q", td, path, err, tt.td, tt.path)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("SplitSPIFFEID = %q, %q, %v; want an error containing %q", td, path, err, tt.err)
			}
			ptd, ppath, ok := SPIFFEIDParts(tt.id)
			if ok != (err == nil) || ptd != td || ppath != path {
				t.Errorf("SPIFFEIDParts = %q, %q, %v; SplitSPIFFEID = %q, %q, %v", ptd, ppath, ok, td, path, err)
			}
		})
	}
}

func TestSPIFFEIDPartsDoesNotAllocate(t *testing.T) {
	for _, id := range []string{"spiffe://example.org/prod/payments", "spiffe://example.org/a%2f", "spiffe://example.org/" + strings.Repeat("a", MaxSPIFFEIDBytes)} {
		if n := testing.AllocsPerRun(100, func() { SPIFFEIDParts(id) }); n != 0 {
			t.Errorf("SPIFFEIDParts(%.40q) allocates %v times", id, n)
		}
	}
}

// FuzzSplitSPIFFEID checks the rule accepts exactly what go-spiffe accepts
// within MaxSPIFFEIDBytes, and splits it the same way.
func FuzzSplitSPIFFEID(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org/a", "spiffe://example.org/a/b.c-d_e", "spiffe://example.org",
		"spiffe://example.org/", "spiffe://example.org/a/../b", "spiffe://example.org/a%2f",
		"spiffe://u@example.org/a", "spiffe://example.org:1/a", "spiffe://example.org/a?q#f",
		"SPIFFE://example.org/a", "spiffe://Example.org/a", "spiffe:///a", "spiffe://",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		td, path, err := SplitSPIFFEID(s)
		id, gerr := spiffeid.FromString(s)
		want := gerr == nil && len(s) <= MaxSPIFFEIDBytes
		if (err == nil) != want {
			t.Fatalf("%q: SplitSPIFFEID error %v, go-spiffe error %v", s, err, gerr)
		}
		if err == nil && (td != id.TrustDomain().Name() || path != id.Path()) {
			t.Fatalf("%q: split %q %q, go-spiffe %q %q", s, td, path, id.TrustDomain().Name(), id.Path())
		}
	})
}
