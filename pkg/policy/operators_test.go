package policy

import "testing"

func TestOperatorIssuerIsAnIssuerSomeRoleRefersTo(t *testing.T) {
	p := mustLoad(t)
	tests := []struct {
		name   string
		issuer string
		want   bool
	}{
		{"the issuer named by role entries is an operator issuer", "corp-idp", true},
		{"an enrollment-only issuer is not", "github", false},
		{"an unknown name is not", "nope", false},
		{"the empty name is not (client_spiffe_id roles have no issuer)", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.OperatorIssuer(tt.issuer); got != tt.want {
				t.Errorf("OperatorIssuer(%q) = %v, want %v", tt.issuer, got, tt.want)
			}
		})
	}
}
