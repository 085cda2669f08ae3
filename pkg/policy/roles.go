package policy

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/google/cel-go/cel"
)

// Role is an operator permission. Admin implies Revoker and Auditor.
type Role string

// Operator roles.
const (
	RoleAuditor Role = "auditor"
	RoleRevoker Role = "revoker"
	RoleAdmin   Role = "admin"
)

// roleRule grants a role either to tokens of an issuer whose claims satisfy a
// condition, or to one client certificate SPIFFE ID.
type roleRule struct {
	role           Role
	issuer         string
	when           *condition
	clientSPIFFEID string
}

func compileRole(env *cel.Env, p *Policy, f roleFile) (*roleRule, error) {
	r := &roleRule{role: Role(f.Role)}
	switch r.role {
	case RoleAuditor, RoleRevoker, RoleAdmin:
	default:
		return nil, fmt.Errorf("role %q is not one of auditor, revoker, admin", f.Role)
	}
	switch {
	case f.ClientSPIFFEID != "" && (f.Issuer != "" || f.When != ""):
		return nil, errors.New("client_spiffe_id excludes issuer and when")
	case f.ClientSPIFFEID != "":
		if _, err := parseSPIFFEID(f.ClientSPIFFEID); err != nil {
			return nil, fmt.Errorf("client_spiffe_id: %w", err)
		}
		r.clientSPIFFEID = f.ClientSPIFFEID
	case f.Issuer != "":
		if _, ok := p.IssuerByName(f.Issuer); !ok {
			return nil, fmt.Errorf("issuer %q is not a configured token issuer", f.Issuer)
		}
		if f.When == "" {
			return nil, errors.New("when is required with issuer (a role for every token of an issuer is almost certainly a mistake)")
		}
		var err error
		if r.when, err = compileCondition(env, f.When); err != nil {
			return nil, fmt.Errorf("when: %w", err)
		}
		r.issuer = f.Issuer
	default:
		return nil, errors.New("either issuer (with when) or client_spiffe_id is required")
	}
	return r, nil
}

// Roles returns the roles the policy grants to a verified token of the named
// issuer with these claims, sorted, with admin expanded to revoker and auditor.
// A condition that fails to evaluate grants nothing.
func (p *Policy) Roles(issuerName string, claims map[string]any) []Role {
	granted := map[Role]bool{}
	for _, r := range p.roles {
		if r.issuer == "" || r.issuer != issuerName {
			continue
		}
		if r.when.eval(context.Background(), claims) == nil {
			granted[r.role] = true
		}
	}
	return expandRoles(granted)
}

// RolesForSPIFFEID returns the roles granted to a client certificate with this
// exact SPIFFE ID, sorted, with admin expanded.
func (p *Policy) RolesForSPIFFEID(id string) []Role {
	granted := map[Role]bool{}
	for _, r := range p.roles {
		if r.clientSPIFFEID != "" && r.clientSPIFFEID == id {
			granted[r.role] = true
		}
	}
	return expandRoles(granted)
}

// HasRole tells whether want is in roles.
func HasRole(roles []Role, want Role) bool {
	for _, r := range roles {
		if r == want {
			return true
		}
	}
	return false
}

func expandRoles(granted map[Role]bool) []Role {
	if granted[RoleAdmin] {
		granted[RoleRevoker], granted[RoleAuditor] = true, true
	}
	out := make([]Role, 0, len(granted))
	for r := range granted {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
