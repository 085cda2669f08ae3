package server

import "net/http"

// Kind is what a refusal means to the client, independent of the handler
// that refuses: it alone decides the HTTP status and the authentication
// challenge (kindStatus, kindChallenge). Handlers and classify say which kind
// an error is; nothing else in the package picks a status for an error.
// It is a string, not an int, so that an HTTP status cannot be passed where
// a kind is expected (an untyped 503 converts silently to an int kind: a
// merge once returned http.StatusServiceUnavailable as a Kind, a 500).
type Kind string

const (
	// KindInternal is our failure with no client-facing meaning: 500 with
	// a generic detail. It is the zero value, so an *Error whose Kind was
	// forgotten fails closed.
	KindInternal Kind = ""
	// KindInput is a malformed or out-of-range request: 400.
	KindInput Kind = "input"
	// KindCredential is a missing, unknown, stale or mismatched TLS client
	// certificate: 401 without a challenge (HTTP has no scheme for it).
	KindCredential Kind = "credential"
	// KindBearerMissing is a bearer-authenticated route asked without (or
	// with unusable) credentials: 401 with WWW-Authenticate: Bearer.
	KindBearerMissing Kind = "bearer_missing"
	// KindBearerInvalid is a bearer token that was presented and refused
	// (malformed, expired, bad signature, replayed...): 401 with
	// WWW-Authenticate: Bearer error="invalid_token" (RFC 6750 section 3.1).
	KindBearerInvalid Kind = "bearer_invalid"
	// KindPolicy is an authenticated caller refused by policy, a role, a
	// revocation or a hold: 403.
	KindPolicy Kind = "policy"
	// KindNotFound is a resource that does not exist (or a route this
	// server does not serve): 404.
	KindNotFound Kind = "not_found"
	// KindMethod is a method the resource does not allow: 405.
	KindMethod Kind = "method"
	// KindConflict is a request that contradicts the current state (a
	// rotation in progress, an unsafe rollback, an override already
	// decided): 409.
	KindConflict Kind = "conflict"
	// KindTooLarge is a body over the size limit: 413.
	KindTooLarge Kind = "too_large"
	// KindUnavailable is a dependency that did not answer (database, key
	// store, token issuer, no bundle yet): 503, to retry.
	KindUnavailable Kind = "unavailable"
)

// kindStatus is the one table from kinds to HTTP statuses.
var kindStatus = map[Kind]int{
	KindInternal:      http.StatusInternalServerError,
	KindInput:         http.StatusBadRequest,
	KindCredential:    http.StatusUnauthorized,
	KindBearerMissing: http.StatusUnauthorized,
	KindBearerInvalid: http.StatusUnauthorized,
	KindPolicy:        http.StatusForbidden,
	KindNotFound:      http.StatusNotFound,
	KindMethod:        http.StatusMethodNotAllowed,
	KindConflict:      http.StatusConflict,
	KindTooLarge:      http.StatusRequestEntityTooLarge,
	KindUnavailable:   http.StatusServiceUnavailable,
}

// Status is the HTTP status of an answer of kind k; an unknown kind is 500.
func (k Kind) Status() int {
	if s, ok := kindStatus[k]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// challenge is the WWW-Authenticate value an answer of kind k carries, ""
// for none.
func (k Kind) challenge() string {
	switch k {
	case KindBearerMissing:
		return `Bearer realm="workload-ca"`
	case KindBearerInvalid:
		return `Bearer realm="workload-ca", error="invalid_token"`
	}
	return ""
}

// internalDetail is the detail of every 500: nothing about the cause.
const internalDetail = "internal error; quote the request_id when reporting it"
