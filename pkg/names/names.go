package names

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// MaxDNSNameBytes is the longest DNS name accepted (RFC 1035 section 2.3.4,
// without the trailing dot).
const MaxDNSNameBytes = 253

// maxLabelBytes is the longest label (RFC 1035 section 2.3.4).
const maxLabelBytes = 63

// CheckDNSName reports whether n is a DNS name this CA may put in a
// certificate (see the package doc). It does not lower-case n: an upper-case
// letter is an error. The error names n and what is wrong; it carries nothing
// secret.
func CheckDNSName(n string) error {
	if n == "" || len(n) > MaxDNSNameBytes {
		return fmt.Errorf("DNS name %q is empty or longer than %d bytes", n, MaxDNSNameBytes)
	}
	if net.ParseIP(n) != nil {
		return fmt.Errorf("DNS name %q is an IP address", n)
	}
	for label := range strings.SplitSeq(n, ".") {
		if label == "" || len(label) > maxLabelBytes {
			return fmt.Errorf("DNS name %q has an empty label or one longer than %d bytes", n, maxLabelBytes)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("DNS name %q has a label starting or ending with a hyphen", n)
		}
		for j := 0; j < len(label); j++ {
			if c := label[j]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("DNS name %q: character %q not allowed (names are lower-case LDH)", n, c)
			}
		}
	}
	return nil
}

// ErrSingleLabel is returned by CheckWorkloadDNSName for a name of one label.
var ErrSingleLabel = errors.New("a workload's DNS name must have at least two labels")

// CheckWorkloadDNSName is CheckDNSName plus at least two labels: the rule for
// every DNS name a policy grants a workload.
func CheckWorkloadDNSName(n string) error {
	if err := CheckDNSName(n); err != nil {
		return err
	}
	if !strings.Contains(n, ".") {
		return fmt.Errorf("DNS name %q: %w", n, ErrSingleLabel)
	}
	return nil
}
