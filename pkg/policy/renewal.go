package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Renewal bounds.
const (
	// DefaultReauthenticateAfter is a rule's reauthenticate_after when it
	// names none: 30 days after its enrollment a lineage must enroll again.
	DefaultReauthenticateAfter = 30 * 24 * time.Hour
	// MaxReauthenticateAfter is the longest reauthenticate_after a rule may
	// set.
	MaxReauthenticateAfter = 365 * 24 * time.Hour
)

// Checks of a renewal's re-evaluation (Recheck); see also CheckRuleRemoved.
const (
	CheckRuleIssuer      = "rule_issuer"      // the rule now takes tokens of another issuer than the lineage's
	CheckCondition       = "when"             // the rule's when no longer holds for the recorded claims
	CheckIdentityChanged = "identity_changed" // the rule now produces another SPIFFE ID or other DNS names
	CheckClaimsMissing   = "claims_missing"   // the lineage's enrollment recorded no claims to re-evaluate
)

// OnReuse is what the CA does when a certificate that was already renewed
// is presented for renewal again (two holders of one key, one of them
// possibly a thief).
type OnReuse string

// The on_reuse choices.
const (
	// OnReuseDeny refuses the renewal (certificate_superseded); nothing is
	// revoked. The default.
	OnReuseDeny OnReuse = "deny"
	// OnReuseRevokeLineage refuses it and revokes every certificate of the
	// lineage (keyCompromise), as refresh-token rotation does.
	OnReuseRevokeLineage OnReuse = "revoke_lineage"
)

// renewalFile is the `renewal:` section.
type renewalFile struct {
	OnReuse string `yaml:"on_reuse"`
}

func compileRenewal(f *renewalFile) (OnReuse, error) {
	if f == nil || f.OnReuse == "" {
		return OnReuseDeny, nil
	}
	switch o := OnReuse(f.OnReuse); o {
	case OnReuseDeny, OnReuseRevokeLineage:
		return o, nil
	}
	return "", fmt.Errorf("renewal: on_reuse %q must be %q or %q", f.OnReuse, OnReuseDeny, OnReuseRevokeLineage)
}

// OnReuse is the policy's renewal.on_reuse (OnReuseDeny by default).
func (p *Policy) OnReuse() OnReuse { return p.onReuse }

// Recheck re-evaluates, with today's policy, the rule that issued a lineage
// on the claims recorded at its enrollment: the rule must still exist
// (rule_removed), still take tokens of issuerName (rule_issuer), its when
// must hold for claims (when), and it must still produce spiffeID and grant
// every one of dnsNames (identity_changed: a certificate may hold a subset
// of what its rule grants, as a CSR may ask for fewer names; spiffe_id,
// dns_names, name_guard when it can no longer produce a valid identity). It returns the rule's
// current Match, or a *DenyError naming the failed check.
func (p *Policy) Recheck(ctx context.Context, ruleName, issuerName string, claims map[string]any, spiffeID string, dnsNames []string) (Match, error) {
	idx := slices.IndexFunc(p.rules, func(r *rule) bool { return r.name == ruleName })
	if idx < 0 {
		return Match{}, &DenyError{Rule: ruleName, Check: CheckRuleRemoved, Detail: fmt.Sprintf("rule %q is no longer in the policy", ruleName)}
	}
	r := p.rules[idx]
	if r.issuer != issuerName {
		return Match{}, &DenyError{Rule: r.name, Check: CheckRuleIssuer,
			Detail: fmt.Sprintf("the rule now takes tokens of %q, the lineage was enrolled with %q", r.issuer, issuerName)}
	}
	if err := r.when.eval(ctx, claims); err != nil {
		detail := "the rule's when no longer holds for the claims recorded at enrollment"
		if !errors.Is(err, errConditionFalse) {
			detail = "the rule's when could not be evaluated on the claims recorded at enrollment: " + truncate(err.Error(), 160)
		}
		return Match{}, &DenyError{Rule: r.name, Check: CheckCondition, Detail: detail, Err: err}
	}
	id, dns, err := r.identity(mapClaims(claims))
	if err != nil {
		var ie *identityError
		check := CheckSPIFFEID
		if errors.As(err, &ie) {
			check = ie.check
		}
		return Match{}, &DenyError{Rule: r.name, Check: check, Detail: truncate(err.Error(), 300), Err: err}
	}
	if err := p.guard.check(id, dns); err != nil {
		return Match{}, &DenyError{Rule: r.name, Check: CheckNameGuard, Detail: truncate(err.Error(), 300), Err: err}
	}
	if id != spiffeID || !grantsAll(dns, dnsNames) {
		return Match{}, &DenyError{Rule: r.name, Check: CheckIdentityChanged,
			Detail: fmt.Sprintf("the rule now grants %s %v, the lineage holds %s %v", truncate(id, 200), dns, truncate(spiffeID, 200), dnsNames)}
	}
	return Match{
		Rule: r.name, PolicyVersion: p.version, SPIFFEID: id, DNSNames: dns,
		MaxTTL: r.maxTTL, DefaultTTL: r.ttl, KeyTypes: append([]KeyType(nil), r.keyTypes...),
	}, nil
}

// grantsAll tells whether every name of held is among granted (DNS names
// compare case-insensitively; the rule's are lower case).
func grantsAll(granted, held []string) bool {
	for _, n := range held {
		if !slices.Contains(granted, strings.ToLower(n)) {
			return false
		}
	}
	return true
}
