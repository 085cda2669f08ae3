// Package authz exists so that a verified SPIFFE identity is not, by itself,
// permission: it decides whether a source identity may call an endpoint of a
// service, from one readable policy kept and signed by the CA, with the same
// code path in every service (Middleware) and at the CA (Policy.Decide).
//
// A Policy is compiled once (ParsePolicy: strict YAML, segment tries for the
// paths, CEL `when` conditions compiled and cost-limited) and is immutable.
// Decide is pure: it reads no clock and logs nothing; callers pass the time
// and the active emergency overrides. Services roll out in observe mode
// (denials come back as would_deny and the call goes on) before enforce.
package authz
