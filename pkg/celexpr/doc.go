// Package celexpr compiles the CEL conditions of the enrollment policy
// (pkg/policy) and of the authorization policy (pkg/authz) under one set of
// bounds, so that neither can load a condition the other would refuse as too
// long, too deep or too costly.
package celexpr
