package authz

import (
	"sync/atomic"
	"time"
)

// PolicySource yields the policy a service enforces now and the emergency
// overrides active with it. A nil policy means none is loaded: every call is
// denied (policy_no_rule, enforce). Implementations must be safe for
// concurrent use and cheap: the middleware calls Current on every request.
type PolicySource interface {
	Current() (*Policy, []Override)
}

// StaticPolicy is a fixed policy (a file the service ships with, tests).
type StaticPolicy struct {
	Policy    *Policy
	Overrides []Override
}

// Current returns the fixed policy and overrides.
func (s StaticPolicy) Current() (*Policy, []Override) { return s.Policy, s.Overrides }

// Clock is the time source of the middleware, the fetcher and the reporter
// (a real one in services, a fake one in tests).
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now().UTC() }

// snapshot is an immutable (policy, overrides) pair swapped atomically.
type snapshot struct {
	policy    *Policy
	overrides []Override
}

// swappable is a PolicySource whose content can be replaced atomically.
type swappable struct{ v atomic.Pointer[snapshot] }

func (s *swappable) Current() (*Policy, []Override) {
	if sn := s.v.Load(); sn != nil {
		return sn.policy, sn.overrides
	}
	return nil, nil
}

func (s *swappable) set(p *Policy, o []Override) { s.v.Store(&snapshot{policy: p, overrides: o}) }
