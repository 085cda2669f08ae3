// Package policy exists so that the one policy file -- which token issuers are
// trusted, which claims earn which SPIFFE ID, who may operate the CA -- is
// parsed, validated and evaluated in one place, offline-testable and atomically
// reloadable.
package policy
