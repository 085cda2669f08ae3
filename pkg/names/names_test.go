package names

import (
	"errors"
	"strings"
	"testing"
)

func TestDNSNameRules(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name          string
		in            string
		any, workload bool // accepted by CheckDNSName, by CheckWorkloadDNSName
	}{
		{"a two-label name is accepted everywhere", "orders.internal", true, true},
		{"a deep name is accepted everywhere", "a-1.b2.prod.example.org", true, true},
		{"a punycode label is accepted", "xn--bcher-kva.example", true, true},
		{"a single label is a valid SAN but not a workload name", "localhost", true, false},
		{"a 63-byte label is accepted", long + ".example", true, true},
		{"a 64-byte label is refused", long + "a.example", false, false},
		{"a name of 253 bytes is accepted", strings.Repeat(long+".", 3) + strings.Repeat("a", 61), true, true},
		{"a name of 254 bytes is refused", strings.Repeat(long+".", 3) + strings.Repeat("a", 62), false, false},
		{"the empty name is refused", "", false, false},
		{"a wildcard is refused", "*.example.org", false, false},
		{"an underscore is refused", "a_b.example.org", false, false},
		{"upper case is refused (callers lower-case first)", "Orders.example.org", false, false},
		{"an empty label is refused", "a..example.org", false, false},
		{"a trailing dot is refused", "example.org.", false, false},
		{"a leading hyphen is refused", "-a.example.org", false, false},
		{"a trailing hyphen is refused", "a-.example.org", false, false},
		{"an IPv4 literal is refused", "10.0.0.1", false, false},
		{"an IPv6 literal is refused", "::1", false, false},
		{"a space is refused", "a b.example.org", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckDNSName(tt.in); (err == nil) != tt.any {
				t.Errorf("CheckDNSName(%q) = %v, want accepted %v", tt.in, err, tt.any)
			}
			if err := CheckWorkloadDNSName(tt.in); (err == nil) != tt.workload {
				t.Errorf("CheckWorkloadDNSName(%q) = %v, want accepted %v", tt.in, err, tt.workload)
			}
		})
	}
	if err := CheckWorkloadDNSName("orders"); !errors.Is(err, ErrSingleLabel) {
		t.Errorf("a single label: %v, want ErrSingleLabel", err)
	}
}

// FuzzCheckDNSName: whatever is accepted is plain lower-case LDH with no
// empty label, and a workload name is an accepted name with a dot.
func FuzzCheckDNSName(f *testing.F) {
	for _, s := range []string{"a.example.org", "*.a.org", "a..b", "-a.b", "a_b.c", "10.0.0.1", "xn--bcher-kva.example", "localhost"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckWorkloadDNSName(s) == nil && (CheckDNSName(s) != nil || !strings.Contains(s, ".")) {
			t.Fatalf("workload name %q is not a DNS name with two labels", s)
		}
		if CheckDNSName(s) != nil {
			return
		}
		if len(s) > MaxDNSNameBytes || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" ||
			strings.Contains(s, "..") || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
			t.Fatalf("accepted %q", s)
		}
	})
}
