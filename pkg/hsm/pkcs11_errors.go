//go:build cgo

package hsm

import (
	"context"
	"errors"

	"github.com/miekg/pkcs11"
)

// This file reads the CK_RV codes that crypto11 passes through unchanged. The
// github.com/miekg/pkcs11 import is crypto11's own error type (crypto11 returns
// pkcs11.Error values); nothing here talks to the module directly.

// connectionLost lists the return values after which the crypto11 context is
// presumed broken: the token, the module, the session or the login went away,
// or the object handles were invalidated underneath us (SoftHSM reports a
// token whose storage vanished as CKR_OBJECT_HANDLE_INVALID). The store
// answers them with ErrUnavailable and rebuilds the context on a later call.
var connectionLost = map[pkcs11.Error]bool{
	pkcs11.CKR_GENERAL_ERROR:            true,
	pkcs11.CKR_FUNCTION_FAILED:          true,
	pkcs11.CKR_DEVICE_ERROR:             true,
	pkcs11.CKR_DEVICE_MEMORY:            true,
	pkcs11.CKR_DEVICE_REMOVED:           true,
	pkcs11.CKR_TOKEN_NOT_PRESENT:        true,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:     true,
	pkcs11.CKR_SESSION_HANDLE_INVALID:   true,
	pkcs11.CKR_SESSION_CLOSED:           true,
	pkcs11.CKR_SESSION_COUNT:            true,
	pkcs11.CKR_USER_NOT_LOGGED_IN:       true,
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: true,
	pkcs11.CKR_OBJECT_HANDLE_INVALID:    true,
	pkcs11.CKR_KEY_HANDLE_INVALID:       true,
	pkcs11.CKR_SLOT_ID_INVALID:          true,
}

// isConnectionLost reports whether err, returned by a crypto11 call, means the
// context must be rebuilt. Errors caused by the request itself (bad mechanism
// parameters, wrong data length, unsupported options) are not.
func isConnectionLost(err error) bool {
	var rv pkcs11.Error
	if errors.As(err, &rv) {
		return connectionLost[rv]
	}
	return false
}

// refused lists the return values by which a token refuses the request
// itself: a template, attribute, mechanism, curve or key size it does not
// support, or a key not allowed the operation. Reconnecting cannot fix
// them; the store answers them with ErrUnsupported (a configuration error).
var refused = map[pkcs11.Error]bool{
	pkcs11.CKR_ATTRIBUTE_READ_ONLY:              true,
	pkcs11.CKR_ATTRIBUTE_TYPE_INVALID:           true,
	pkcs11.CKR_ATTRIBUTE_VALUE_INVALID:          true,
	pkcs11.CKR_TEMPLATE_INCOMPLETE:              true,
	pkcs11.CKR_TEMPLATE_INCONSISTENT:            true,
	pkcs11.CKR_MECHANISM_INVALID:                true,
	pkcs11.CKR_MECHANISM_PARAM_INVALID:          true,
	pkcs11.CKR_DOMAIN_PARAMS_INVALID:            true,
	pkcs11.CKR_CURVE_NOT_SUPPORTED:              true,
	pkcs11.CKR_KEY_SIZE_RANGE:                   true,
	pkcs11.CKR_KEY_TYPE_INCONSISTENT:            true,
	pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED:       true,
	pkcs11.CKR_FUNCTION_NOT_SUPPORTED:           true,
	pkcs11.CKR_KEY_NOT_NEEDED:                   true,
	pkcs11.CKR_KEY_INDIGESTIBLE:                 true,
	pkcs11.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT: true,
}

// isRefused reports whether err, returned by a crypto11 call, is the token
// refusing the request as unsupported.
func isRefused(err error) bool {
	var rv pkcs11.Error
	if errors.As(err, &rv) {
		return refused[rv]
	}
	return false
}

// isAmbiguousFailure reports whether err is CKR_GENERAL_ERROR or
// CKR_FUNCTION_FAILED: a lost device on some tokens, a refused template on
// others (tpm2-pkcs11 answers an attribute it cannot honour so), and a
// transient failure under load on SoftHSM. Generate tells them apart by
// asking the token something else (generateClassified).
func isAmbiguousFailure(err error) bool {
	var rv pkcs11.Error
	return errors.As(err, &rv) && (rv == pkcs11.CKR_GENERAL_ERROR || rv == pkcs11.CKR_FUNCTION_FAILED)
}

// isAttributeUnavailable reports whether a C_GetAttributeValue error means
// the object has no such attribute (or will not show it): not a failure.
func isAttributeUnavailable(err error) bool {
	var rv pkcs11.Error
	return errors.As(err, &rv) && (rv == pkcs11.CKR_ATTRIBUTE_TYPE_INVALID || rv == pkcs11.CKR_ATTRIBUTE_SENSITIVE)
}

// isLoginRefused reports whether the token refused the PIN; reconnecting
// cannot fix that, so it is not reported as ErrUnavailable.
func isLoginRefused(err error) bool {
	var rv pkcs11.Error
	if !errors.As(err, &rv) {
		return false
	}
	switch rv {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE,
		pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED:
		return true
	}
	return false
}

// isPoolTimeout reports whether err is crypto11's session pool giving up after
// PoolWaitTimeout: the token is saturated, which callers see as ErrUnavailable
// without a reconnect.
func isPoolTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded)
}
