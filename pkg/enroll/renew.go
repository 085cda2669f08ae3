package enroll

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/policy"
)

// RenewalProvenance is the provenance recorded for a renewed certificate.
type RenewalProvenance struct {
	Shape         string `json:"shape"` // always "renewal"
	RenewedFrom   string `json:"renewed_from"`
	SPIFFEID      string `json:"spiffe_id"`
	PolicyRule    string `json:"policy_rule"`
	PolicyVersion string `json:"policy_version"`
}

// DecideRenewal authorises renewing current, the certificate a workload
// authenticated with over mTLS, for the key in csrPEM. The caller has already
// verified the client certificate chain and checked that current is neither
// revoked nor expired; rule is the policy rule recorded with current.
//
// The identity stays exactly current's SPIFFE ID and DNS names (the CSR may
// ask for a subset, as for enrollment). The current policy still has the last
// word: the rule must still exist (policy_denied, check rule_removed), the
// identity must still pass the name guard (policy_denied, name_guard), the key
// must pass the CSR checks and the rule's key types, and the TTL is bounded
// by the rule's current max_ttl (0 means its default). No token is involved,
// so no replay record is written.
func (d *Decider) DecideRenewal(ctx context.Context, current *x509.Certificate, rule string, csrPEM []byte, ttl time.Duration) (Decision, error) {
	pol := d.policies.Load()
	if pol == nil {
		return Decision{}, newErr(ReasonInternal, nil, "no policy loaded")
	}
	deny := func(check, format string, args ...any) (Decision, error) {
		e := newErr(ReasonPolicyDenied, nil, format, args...)
		e.Rule, e.Check, e.PolicyVersion = rule, check, pol.Version()
		return Decision{}, e
	}
	if current == nil || len(current.URIs) != 1 {
		return deny(policy.CheckSPIFFEID, "the current certificate must carry exactly one SPIFFE ID")
	}
	id := current.URIs[0].String()
	ri, ok := pol.Rule(rule)
	if !ok {
		return deny(policy.CheckRuleRemoved, "rule %q is no longer in the policy", rule)
	}
	if err := pol.CheckNames(id, current.DNSNames); err != nil {
		return deny(policy.CheckNameGuard, "the current identity is no longer allowed: %v", err)
	}
	fail := func(e *Error) (Decision, error) {
		e.Rule, e.Subject, e.PolicyVersion = rule, id, pol.Version()
		return Decision{}, e
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return fail(asError(err))
	}
	kt, _ := KeyTypeOf(csr.PublicKey)
	m := policy.Match{Rule: rule, PolicyVersion: pol.Version(), SPIFFEID: id, DNSNames: current.DNSNames,
		MaxTTL: ri.MaxTTL, DefaultTTL: ri.DefaultTTL, KeyTypes: ri.KeyTypes}
	if !m.AllowsKeyType(kt) {
		e := newErr(ReasonPolicyDenied, nil, "key type %s is not allowed by the rule (allowed: %v)", kt, m.KeyTypes)
		e.Check = policy.CheckKeyType
		return fail(e)
	}
	dns, err := grantedNames(csr, m)
	if err != nil {
		return fail(asError(err))
	}
	switch {
	case ttl < 0:
		return fail(newErr(ReasonTTLInvalid, nil, "ttl must not be negative"))
	case ttl == 0:
		ttl = m.DefaultTTL
	case ttl > m.MaxTTL:
		return fail(newErr(ReasonTTLTooLong, nil, "ttl %s exceeds the rule's max_ttl %s", ttl, m.MaxTTL))
	}
	prov, err := json.Marshal(RenewalProvenance{
		Shape: "renewal", RenewedFrom: fmt.Sprintf("%x", current.SerialNumber), SPIFFEID: id,
		PolicyRule: rule, PolicyVersion: pol.Version(),
	})
	if err != nil {
		return fail(newErr(ReasonInternal, err, "provenance"))
	}
	return Decision{
		PublicKey: csr.PublicKey, KeyType: kt, CSR: csr, SPIFFEID: id, DNSNames: dns, TTL: ttl,
		Rule: rule, PolicyVersion: pol.Version(), Subject: id, Provenance: prov,
	}, nil
}
