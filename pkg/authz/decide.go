package authz

import (
	"net/http"
	"time"

	"github.com/workload-ca/workload-ca/pkg/names"
)

// Override is an active emergency override: Source may call Endpoint of
// Service until Until. ID is the CA's id for it (logged when it allows a
// call).
type Override struct {
	ID       string    `json:"id"`
	Source   string    `json:"source"`   // exact SPIFFE ID
	Service  string    `json:"service"`  // service name
	Endpoint string    `json:"endpoint"` // endpoint name within the service
	Until    time.Time `json:"until"`
}

// Request is what a decision is about.
type Request struct {
	Source  string      // verified peer SPIFFE ID; "" = no verified identity
	Service string      // destination service name
	Method  string      // HTTP method, case-sensitive
	Path    string      // raw request path (no query); normalised inside Decide
	Header  http.Header // only headers the policy names are read (may be nil)
	// Time is request.time for conditions and the instant overrides are
	// checked at. Callers pass their clock (time.Now is never read here);
	// with the zero time conditions see the Unix epoch and no override
	// applies.
	Time time.Time
}

// Decision is the answer; Reason is one of the Reason* constants.
type Decision struct {
	// Allowed says whether the call may go on: true for allow, and for
	// would_deny in observe mode.
	Allowed       bool   `json:"-"`
	Decision      string `json:"decision"` // "allow" | "deny" | "would_deny" (observe mode)
	Reason        string `json:"reason"`
	Endpoint      string `json:"endpoint,omitempty"`
	Mode          string `json:"mode"` // "observe" | "enforce"
	OverrideID    string `json:"override,omitempty"`
	PolicyVersion string `json:"policy_version"`
}

// Reasons. They are stable: logs, reports and problem+json answers carry
// them.
const (
	// ReasonAllowed: an endpoint matching the method and path allows the
	// source (and its condition, if any, holds).
	ReasonAllowed = "allowed"
	// ReasonOverride: denied by the policy, allowed by an active emergency
	// override (Decision.OverrideID names it).
	ReasonOverride = "override"
	// ReasonNoWritePermission: the source may read this path (an endpoint
	// with GET or HEAD on it allows the source) but asked to write.
	ReasonNoWritePermission = "policy_no_write_permission"
	// ReasonNotAllowed: an endpoint matches the method and path; the source
	// is in none of the matching endpoints' allow lists.
	ReasonNotAllowed = "policy_not_allowed"
	// ReasonNoRule: no endpoint matches the method and path (or the
	// destination service is not in the policy).
	ReasonNoRule = "policy_no_rule"
	// ReasonConditionFalse: an endpoint allows the source but its `when`
	// condition is false (or could not be evaluated).
	ReasonConditionFalse = "policy_condition_false"
	// ReasonIdentityUnverified: no verified, well-formed SPIFFE ID.
	ReasonIdentityUnverified = "identity_unverified"
	// ReasonPathInvalid: the path does not normalise (NormalizePath).
	ReasonPathInvalid = "policy_path_invalid"
)

// Reasons lists every reason Decide can give.
var Reasons = []string{
	ReasonAllowed, ReasonOverride, ReasonNoWritePermission, ReasonNotAllowed,
	ReasonNoRule, ReasonConditionFalse, ReasonIdentityUnverified, ReasonPathInvalid,
}

// isRead reports whether m is a method that only reads.
func isRead(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// Decide decides one request against p and the given active overrides
// (overrides whose Until is not after r.Time are ignored, as are those for
// another source, service or endpoint, and all of them when r.Time is zero). A nil policy denies everything
// with policy_no_rule. Anything no endpoint allows is
// denied. In observe mode a denial comes back with Decision "would_deny" and
// Allowed true. A destination service the policy does not know is denied
// with policy_no_rule in enforce mode. Pure: no I/O, no logging, no clock.
//
// Among the endpoints matching the method and the path, the first one (in
// policy order) that allows the source and whose condition holds decides.
// If none does, the reason is, in this order: policy_condition_false (one
// allowed the source but its condition failed), policy_no_write_permission
// (a write, and an endpoint reading this path allows the source),
// policy_not_allowed (some endpoint matched), policy_no_rule. A denial is
// then turned into an allow with reason override by an active override for
// this source, service and one of the matching endpoints.
func (p *Policy) Decide(r Request, overrides []Override) Decision {
	if p == nil {
		return Decision{Mode: ModeEnforce}.deny(ReasonNoRule)
	}
	d := Decision{PolicyVersion: p.version, Mode: ModeEnforce}
	svc := p.services[r.Service]
	if svc == nil {
		return d.deny(ReasonNoRule)
	}
	d.Mode = svc.mode
	td, srcPath, ok := names.SPIFFEIDParts(r.Source)
	if !ok {
		return d.deny(ReasonIdentityUnverified)
	}
	var buf [16]string
	segs, err := splitPath(r.Path, buf[:0])
	if err != nil {
		return d.deny(ReasonPathInvalid)
	}
	var onPath bitset
	svc.paths.match(segs, &onPath)
	if onPath.empty() {
		return d.deny(ReasonNoRule)
	}

	matched, condFailed := -1, -1
	normPath := ""
	for i, ep := range svc.endpoints {
		if !onPath.has(i) || !ep.hasMethod(r.Method) {
			continue
		}
		if matched < 0 {
			matched = i
		}
		if !ep.allow.allows(r.Source) {
			continue
		}
		if ep.cond != nil {
			if normPath == "" {
				normPath = joinPath(segs)
			}
			if !ep.cond.eval(r.Source, td, srcPath, &r, normPath) {
				if condFailed < 0 {
					condFailed = i
				}
				continue
			}
		}
		d.Allowed, d.Decision, d.Reason, d.Endpoint = true, DecisionAllow, ReasonAllowed, ep.name
		return d
	}

	reason, at := ReasonNoRule, -1
	switch {
	case condFailed >= 0:
		reason, at = ReasonConditionFalse, condFailed
	case !isRead(r.Method) && svc.readableBy(&onPath, r.Source):
		reason, at = ReasonNoWritePermission, matched
	case matched >= 0:
		reason, at = ReasonNotAllowed, matched
	}
	if at >= 0 {
		d.Endpoint = svc.endpoints[at].name
	}
	if matched >= 0 && !r.Time.IsZero() {
		for _, o := range overrides {
			if o.Source != r.Source || o.Service != svc.name || !r.Time.Before(o.Until) {
				continue
			}
			for i, ep := range svc.endpoints {
				if ep.name == o.Endpoint && onPath.has(i) && ep.hasMethod(r.Method) {
					d.Allowed, d.Decision, d.Reason, d.Endpoint, d.OverrideID = true, DecisionAllow, ReasonOverride, ep.name, o.ID
					return d
				}
			}
		}
	}
	return d.deny(reason)
}

func (d Decision) deny(reason string) Decision {
	d.Reason = reason
	if d.Mode == ModeObserve {
		d.Allowed, d.Decision = true, DecisionWouldDeny
	} else {
		d.Allowed, d.Decision = false, DecisionDeny
	}
	return d
}

// readableBy reports whether an endpoint on this path that serves GET or HEAD
// allows source (its condition is not evaluated: the reason only explains).
func (s *service) readableBy(onPath *bitset, source string) bool {
	for i, ep := range s.endpoints {
		if onPath.has(i) && ep.canRead() && ep.allow.allows(source) {
			return true
		}
	}
	return false
}

func joinPath(segs []string) string {
	if len(segs) == 0 {
		return "/"
	}
	n := 0
	for _, s := range segs {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	for _, s := range segs {
		b = append(b, '/')
		b = append(b, s...)
	}
	return string(b)
}

// identityOf returns the SPIFFE ID of the named service, "" if unknown or p
// is nil.
func (p *Policy) identityOf(service string) string {
	if p == nil {
		return ""
	}
	if s := p.services[service]; s != nil {
		return s.identity
	}
	return ""
}
