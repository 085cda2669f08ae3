package enroll

import (
	"errors"
	"fmt"
)

// Stable reason codes carried by *Error, for the HTTP edge's problem+json
// `reason` and for denial records. They never change meaning.
const (
	ReasonTokenMalformed         = "token_malformed"
	ReasonTokenExpired           = "token_expired"
	ReasonTokenNotYetValid       = "token_not_yet_valid"
	ReasonTokenBadSignature      = "token_bad_signature"
	ReasonTokenUnknownIssuer     = "token_unknown_issuer"
	ReasonTokenWrongAudience     = "token_wrong_audience"
	ReasonTokenReplayed          = "token_replayed"
	ReasonPolicyDenied           = "policy_denied"
	ReasonCSRMalformed           = "csr_malformed"
	ReasonCSRBadSignature        = "csr_bad_signature"
	ReasonCSRWeakKey             = "csr_weak_key"
	ReasonCSRForbiddenExtension  = "csr_forbidden_extension"
	ReasonTTLTooLong             = "ttl_too_long"
	ReasonTTLInvalid             = "ttl_invalid"              // a negative TTL
	ReasonTokenIssuerUnavailable = "token_issuer_unavailable" // no usable keys: the issuer is down and nothing (fresh enough) is cached; a 503, not the client's fault
	ReasonStoreUnavailable       = "store_unavailable"        // the replay record could not be written
	ReasonInternal               = "internal"                 // anything not produced by this package
)

// Error is a refusal with a stable Reason. Detail is a short explanation that
// is safe to return to the requester and to record: it never contains the
// token, key material or secrets (claim values may appear, quoted and
// truncated). Rule, Check, Issuer, Subject and PolicyVersion are filled as far
// as the decision got, for the denial record: Issuer is the policy name of the
// token issuer once the token's iss was recognised, Subject only once the
// token's signature was verified.
type Error struct {
	Reason        string
	Detail        string
	Rule          string // the policy rule involved, if any
	Check         string // the policy check that refused, for policy_denied
	Issuer        string
	Subject       string
	PolicyVersion string
	// Lineage, OnReuse and Revoked describe a certificate_superseded
	// refusal: the lineage, the policy's renewal.on_reuse, and how many of
	// its certificates were revoked for it.
	Lineage string
	OnReuse string
	Revoked int
	Err     error // the underlying cause, for logs; may be nil
}

func (e *Error) Error() string {
	s := "enroll: " + e.Reason
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Rule != "" {
		s += fmt.Sprintf(" (rule %q)", e.Rule)
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Reason returns the reason code of err: the Reason of the first *Error in its
// chain, ReasonInternal for any other non-nil error, "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonInternal
}

func newErr(reason string, err error, format string, args ...any) *Error {
	return &Error{Reason: reason, Detail: fmt.Sprintf(format, args...), Err: err}
}

// quote renders an untrusted value for a Detail: quoted and bounded.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
