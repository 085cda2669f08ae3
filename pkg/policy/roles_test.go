package policy

import (
	"slices"
	"testing"
)

func TestRoles(t *testing.T) {
	p := mustLoad(t)
	tests := []struct {
		name   string
		issuer string
		claims map[string]any
		want   []Role
	}{
		{"a member of pki-revokers is a revoker", "corp-idp", map[string]any{"groups": []any{"pki-revokers"}}, []Role{RoleRevoker}},
		{"a member of both groups has both roles", "corp-idp", map[string]any{"groups": []any{"security", "pki-revokers"}}, []Role{RoleAuditor, RoleRevoker}},
		{"a token without groups has no role", "corp-idp", map[string]any{"sub": "bob"}, []Role{}},
		{"the same claims from another issuer grant nothing", "github", map[string]any{"groups": []any{"pki-revokers"}}, []Role{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Roles(tc.issuer, tc.claims); !slices.Equal(got, tc.want) {
				t.Errorf("Roles() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRolesForSPIFFEIDExpandsAdmin(t *testing.T) {
	p := mustLoad(t)
	got := p.RolesForSPIFFEID("spiffe://example.org/ops/break-glass")
	if want := []Role{RoleAdmin, RoleAuditor, RoleRevoker}; !slices.Equal(got, want) {
		t.Errorf("RolesForSPIFFEID = %v, want %v", got, want)
	}
	if got := p.RolesForSPIFFEID("spiffe://example.org/ops/break-glass/x"); len(got) != 0 {
		t.Errorf("a longer ID got roles %v; matching must be exact", got)
	}
	if !HasRole(got, RoleRevoker) || HasRole(p.RolesForSPIFFEID("spiffe://example.org/x"), RoleAuditor) {
		t.Error("HasRole disagrees with RolesForSPIFFEID")
	}
}
