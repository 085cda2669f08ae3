package issuer

import (
	"strings"
	"testing"

	"github.com/zmap/zlint/v3/lint"
)

func TestLintRegistryHoldsOnlyIETFLints(t *testing.T) {
	reg, err := lintRegistry()
	if err != nil {
		t.Fatal(err)
	}
	names := reg.Names()
	if len(names) < 100 {
		t.Fatalf("only %d lints registered; the filter is too narrow", len(names))
	}
	allowed := map[lint.LintSource]bool{}
	for _, s := range lintSources {
		allowed[s] = true
	}
	for _, n := range names {
		l := reg.CertificateLints().ByName(n)
		if l == nil {
			continue // revocation list or OCSP lint
		}
		if !allowed[l.Source] {
			t.Errorf("lint %s from source %s is registered", n, l.Source)
		}
	}
	for _, want := range []string{"e_ext_san_uri_format_invalid", "e_ext_key_usage_cert_sign_without_ca", "e_sub_cert_aia_does_not_contain_issuing_ca_url"} {
		has := false
		for _, n := range names {
			has = has || n == want
		}
		if strings.HasPrefix(want, "e_sub_cert") == has { // CA/B Forum lints must be absent, IETF ones present
			t.Errorf("lint %s present = %v", want, has)
		}
	}
}
