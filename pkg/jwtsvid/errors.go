package jwtsvid

import "errors"

// Reason is the stable, machine-readable cause of a refused token.
type Reason string

// Reasons of Verify. Their values never change meaning.
const (
	// ReasonMalformed: not a compact JWS, bad encoding or JSON, a missing
	// or mistyped required claim or header (kid, sub, aud, exp), a subject
	// that is not a SPIFFE ID, or an unsupported critical header.
	ReasonMalformed Reason = "token_malformed"
	// ReasonAlgNotAllowed: the alg is not on the allow-list (none and HMAC
	// never are), or does not fit the type of the key named by kid.
	ReasonAlgNotAllowed Reason = "alg_not_allowed"
	// ReasonUnknownKid: no key with the token's kid is in the bundle, even
	// after a refresh.
	ReasonUnknownKid Reason = "unknown_kid"
	// ReasonBadSignature: the signature does not verify with that key.
	ReasonBadSignature Reason = "token_bad_signature"
	// ReasonExpired: exp (plus leeway) has passed.
	ReasonExpired Reason = "token_expired"
	// ReasonNotYetValid: nbf or iat lies in the future (beyond leeway).
	ReasonNotYetValid Reason = "token_not_yet_valid"
	// ReasonWrongAudience: aud does not contain the expected audience.
	ReasonWrongAudience Reason = "token_wrong_audience"
	// ReasonWrongTrustDomain: sub is a SPIFFE ID of another trust domain.
	ReasonWrongTrustDomain Reason = "wrong_trust_domain"
	// ReasonBundleUnavailable: no trust bundle could be fetched and none is
	// cached (or the cached one is older than MaxStale).
	ReasonBundleUnavailable Reason = "bundle_unavailable"
)

// Error is a refused token: its Reason, a Detail safe to log (it never
// holds the token or key material) and the underlying cause, if any.
type Error struct {
	Reason Reason
	Detail string
	Err    error
}

func (e *Error) Error() string {
	msg := "jwtsvid: " + string(e.Reason)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrExpired) and the like match any *Error with the
// same Reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Detail == "" && t.Err == nil && t.Reason == e.Reason
}

// Sentinels for errors.Is, one per reason.
var (
	ErrMalformed         = &Error{Reason: ReasonMalformed}
	ErrAlgNotAllowed     = &Error{Reason: ReasonAlgNotAllowed}
	ErrUnknownKid        = &Error{Reason: ReasonUnknownKid}
	ErrBadSignature      = &Error{Reason: ReasonBadSignature}
	ErrExpired           = &Error{Reason: ReasonExpired}
	ErrNotYetValid       = &Error{Reason: ReasonNotYetValid}
	ErrWrongAudience     = &Error{Reason: ReasonWrongAudience}
	ErrWrongTrustDomain  = &Error{Reason: ReasonWrongTrustDomain}
	ErrBundleUnavailable = &Error{Reason: ReasonBundleUnavailable}
)

// ReasonOf returns the Reason of a *Error in err's chain, or "" if there is
// none (a cancelled context, for example).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func fail(r Reason, detail string, err error) *Error {
	return &Error{Reason: r, Detail: detail, Err: err}
}
