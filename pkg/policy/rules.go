package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/cel-go/cel"

	"github.com/workload-ca/workload-ca/pkg/names"
)

// MaxRuleTTL is the longest max_ttl a rule may grant.
const MaxRuleTTL = 30 * 24 * time.Hour

// Checks named by DenyError.Check.
const (
	CheckNoRuleMatched = "no_rule_matched" // no rule for the issuer matched the claims
	CheckSPIFFEID      = "spiffe_id"       // the matched rule's spiffe_id could not be filled from the claims
	CheckDNSNames      = "dns_names"       // the matched rule's dns_names could not be filled from the claims
	CheckNameGuard     = "name_guard"      // the identity falls outside the trust domain or permitted DNS domains
	CheckKeyType       = "key_type"        // the request's key type is not allowed by the rule (set by enroll)
	CheckNames         = "requested_names" // the request asks for names the rule does not grant (set by enroll)
	CheckRuleRemoved   = "rule_removed"    // a renewal names a rule the current policy no longer has (set by enroll)
)

// CheckSPIFFEIDSegment is the check of a denial where a placeholder that is
// one SPIFFE ID path segment got a value with '/', or "." or ".." (mark it
// |path to allow several).
const CheckSPIFFEIDSegment = "spiffe_id_segment"

// DenyError is a policy denial: no rule matched, or the matched rule could not
// produce a valid identity from these claims. Rule is empty when no rule
// matched. Detail is safe to show to the requester and to record; it never
// contains a token.
type DenyError struct {
	Rule   string
	Check  string
	Detail string
	Err    error
}

func (e *DenyError) Error() string {
	if e.Rule != "" {
		return fmt.Sprintf("policy denied by rule %q (%s): %s", e.Rule, e.Check, e.Detail)
	}
	return fmt.Sprintf("policy denied (%s): %s", e.Check, e.Detail)
}

func (e *DenyError) Unwrap() error { return e.Err }

// Match is the outcome of a rule that matched: everything the CA needs to know
// about what it may issue.
type Match struct {
	Rule          string
	PolicyVersion string
	SPIFFEID      string
	DNSNames      []string
	MaxTTL        time.Duration
	DefaultTTL    time.Duration // used when a request names no TTL; <= MaxTTL
	KeyTypes      []KeyType
}

// AllowsKeyType tells whether kt is among the rule's allowed key types.
func (m Match) AllowsKeyType(kt KeyType) bool {
	for _, k := range m.KeyTypes {
		if k == kt {
			return true
		}
	}
	return false
}

type rule struct {
	name     string
	issuer   string
	when     *condition
	spiffeID *template
	dnsNames []*template
	maxTTL   time.Duration
	ttl      time.Duration
	keyTypes []KeyType
	// reauthAfter bounds a lineage's renewals (renewal.go).
	reauthAfter time.Duration
}

func compileRule(env *cel.Env, p *Policy, f ruleFile) (*rule, error) {
	if !validName(f.Name) {
		return nil, errors.New("name must be 1-64 characters of [a-zA-Z0-9._-]")
	}
	if _, ok := p.IssuerByName(f.Issuer); !ok {
		return nil, fmt.Errorf("issuer %q is not a configured token issuer", f.Issuer)
	}
	r := &rule{name: f.Name, issuer: f.Issuer}
	var err error
	if r.when, err = compileCondition(env, f.When); err != nil {
		return nil, fmt.Errorf("when: %w", err)
	}
	if f.SPIFFEID == "" {
		return nil, errors.New("spiffe_id is required")
	}
	if r.spiffeID, err = parseTemplate(f.SPIFFEID); err != nil {
		return nil, fmt.Errorf("spiffe_id: %w", err)
	}
	if r.spiffeID.multiSegment() > 1 {
		return nil, fmt.Errorf("spiffe_id %q: at most one placeholder may be marked |path (two could splice one identity out of different claims)", f.SPIFFEID)
	}
	if r.spiffeID.sharedSegment() {
		return nil, fmt.Errorf("spiffe_id %q: two placeholders share a path segment (they could splice one identity out of different claims); separate them with '/'", f.SPIFFEID)
	}
	prefix := "spiffe://" + p.trustDomain.Name() + "/"
	if first := r.spiffeID.parts[0]; first.path != nil || !strings.HasPrefix(first.literal, prefix) {
		return nil, fmt.Errorf("spiffe_id %q must start with the literal %q", f.SPIFFEID, prefix)
	}
	if err := checkReservedSPIFFEID(r.spiffeID, p.trustDomain.Name()); err != nil {
		return nil, err
	}
	for _, d := range f.DNSNames {
		t, err := parseTemplate(d)
		if err != nil {
			return nil, fmt.Errorf("dns_names: %w", err)
		}
		if t.multiSegment() > 0 {
			return nil, fmt.Errorf("dns_names: %q: |path is only for spiffe_id; a DNS placeholder is one label", d)
		}
		r.dnsNames = append(r.dnsNames, t)
	}
	// Fill every placeholder with a harmless sample to check the shape of the
	// names, and the hard guard, at load time rather than at the first request.
	id, dns, err := r.identity(sampleClaims{})
	if err != nil {
		return nil, err
	}
	if err := p.guard.check(id, dns); err != nil {
		return nil, err
	}
	if f.MaxTTL == "" {
		return nil, errors.New("max_ttl is required")
	}
	if r.maxTTL, err = optDuration(f.MaxTTL, MaxRuleTTL); err != nil {
		return nil, fmt.Errorf("max_ttl: %w", err)
	}
	if r.ttl, err = optDuration(f.TTL, r.maxTTL); err != nil {
		return nil, fmt.Errorf("ttl: %w (it must not exceed max_ttl)", err)
	}
	if r.ttl == 0 {
		r.ttl = r.maxTTL
	}
	if r.keyTypes, err = parseKeyTypes(f.KeyTypes); err != nil {
		return nil, fmt.Errorf("key_types: %w", err)
	}
	if r.reauthAfter, err = optDuration(f.ReauthenticateAfter, MaxReauthenticateAfter); err != nil {
		return nil, fmt.Errorf("reauthenticate_after: %w", err)
	}
	if r.reauthAfter == 0 {
		r.reauthAfter = DefaultReauthenticateAfter
	}
	return r, nil
}

// claimSource abstracts the claims map so that load-time validation can fill
// every placeholder with a sample value.
type claimSource interface {
	render(t *template, check func(string, bool) error) (string, error)
}

type mapClaims map[string]any

func (m mapClaims) render(t *template, check func(string, bool) error) (string, error) {
	return t.render(m, check)
}

type sampleClaims struct{}

func (sampleClaims) render(t *template, check func(string, bool) error) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.path == nil {
			b.WriteString(p.literal)
		} else {
			b.WriteString("x")
		}
	}
	return b.String(), nil
}

// identityError marks which name failed to render.
type identityError struct {
	check string
	err   error
}

func (e *identityError) Error() string { return e.check + ": " + e.err.Error() }
func (e *identityError) Unwrap() error { return e.err }

// identity renders the rule's SPIFFE ID and DNS names and checks their syntax.
func (r *rule) identity(c claimSource) (string, []string, error) {
	id, err := c.render(r.spiffeID, checkPathValue)
	if errors.Is(err, errNotOneSegment) {
		return "", nil, &identityError{CheckSPIFFEIDSegment, err}
	}
	if err != nil {
		return "", nil, &identityError{CheckSPIFFEID, err}
	}
	if _, err := parseSPIFFEID(id); err != nil {
		return "", nil, &identityError{CheckSPIFFEID, err}
	}
	dns := make([]string, 0, len(r.dnsNames))
	seen := map[string]bool{}
	for _, t := range r.dnsNames {
		n, err := c.render(t, checkLabelValue)
		if err != nil {
			return "", nil, &identityError{CheckDNSNames, err}
		}
		n = strings.ToLower(n)
		if err := names.CheckWorkloadDNSName(n); err != nil {
			return "", nil, &identityError{CheckDNSNames, err}
		}
		if !seen[n] {
			seen[n] = true
			dns = append(dns, n)
		}
	}
	return id, dns, nil
}

// Evaluate finds the first rule for issuerName whose condition is true for
// claims, fills its identity templates and applies the hard name guard.
//
// A rule whose condition fails to evaluate (a missing claim, a type mismatch,
// the cost limit, the timeout) counts as not matching, and evaluation moves on
// to the next rule: rules only grant, so skipping one can never widen what is
// issued. Once a rule matches, its answer is final: if its identity cannot be
// built from the claims (a claim that would inject a path, an invalid DNS
// label) or breaks the name guard, the request is denied rather than handed to
// a later rule.
//
// Every refusal is a *DenyError.
func (p *Policy) Evaluate(ctx context.Context, issuerName string, claims map[string]any) (Match, error) {
	var skipped []string
	for _, r := range p.rules {
		if r.issuer != issuerName {
			continue
		}
		err := r.when.eval(ctx, claims)
		if errors.Is(err, errConditionFalse) {
			continue
		}
		if err != nil {
			if len(skipped) < 4 {
				skipped = append(skipped, fmt.Sprintf("rule %q not evaluated: %s", r.name, truncate(err.Error(), 160)))
			}
			continue
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
		return Match{
			Rule:          r.name,
			PolicyVersion: p.version,
			SPIFFEID:      id,
			DNSNames:      dns,
			MaxTTL:        r.maxTTL,
			DefaultTTL:    r.ttl,
			KeyTypes:      append([]KeyType(nil), r.keyTypes...),
		}, nil
	}
	detail := fmt.Sprintf("no rule for issuer %q matched", issuerName)
	if len(skipped) > 0 {
		detail += "; " + strings.Join(skipped, "; ")
	}
	return Match{}, &DenyError{Check: CheckNoRuleMatched, Detail: detail}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// RuleInfo is what a rule grants independently of claims; renewals, which
// carry no token, are bounded by it.
type RuleInfo struct {
	Name       string
	Issuer     string
	MaxTTL     time.Duration
	DefaultTTL time.Duration
	KeyTypes   []KeyType
	// ReauthenticateAfter is how long after its enrollment a lineage of
	// this rule may keep renewing.
	ReauthenticateAfter time.Duration
}

// Rule returns the named rule's claim-independent grants, or false if the
// policy has no such rule (any more).
func (p *Policy) Rule(name string) (RuleInfo, bool) {
	for _, r := range p.rules {
		if r.name == name {
			return RuleInfo{Name: r.name, Issuer: r.issuer, MaxTTL: r.maxTTL, DefaultTTL: r.ttl,
				KeyTypes: append([]KeyType(nil), r.keyTypes...), ReauthenticateAfter: r.reauthAfter}, true
		}
	}
	return RuleInfo{}, false
}
