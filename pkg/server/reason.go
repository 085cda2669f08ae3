package server

// Reason is the stable, machine-readable `reason` of a problem+json answer.
// Clients branch on it; its values never change meaning.
type Reason string

// Reason codes. The list in api/openapi.yaml must match (a test checks).
const (
	ReasonTokenMalformed        Reason = "token_malformed"
	ReasonTokenExpired          Reason = "token_expired"
	ReasonTokenNotYetValid      Reason = "token_not_yet_valid"
	ReasonTokenBadSignature     Reason = "token_bad_signature"
	ReasonTokenUnknownIssuer    Reason = "token_unknown_issuer"
	ReasonTokenWrongAudience    Reason = "token_wrong_audience"
	ReasonTokenReplayed         Reason = "token_replayed"
	ReasonPolicyDenied          Reason = "policy_denied"
	ReasonCSRMalformed          Reason = "csr_malformed"
	ReasonCSRBadSignature       Reason = "csr_bad_signature"
	ReasonCSRWeakKey            Reason = "csr_weak_key"
	ReasonCSRForbiddenExtension Reason = "csr_forbidden_extension"
	ReasonTTLTooLong            Reason = "ttl_too_long"
	ReasonCertificateRevoked    Reason = "certificate_revoked"
	ReasonNotFound              Reason = "not_found"
	ReasonUnauthorized          Reason = "unauthorized"
	ReasonForbidden             Reason = "forbidden"
	ReasonBodyTooLarge          Reason = "body_too_large"
	ReasonHSMUnavailable        Reason = "hsm_unavailable"
	// ReasonHSMUnsupported: the token refused a key type, template or
	// mechanism the CA needs (a configuration error; `ca hsm check`).
	ReasonHSMUnsupported   Reason = "hsm_unsupported"
	ReasonStoreUnavailable Reason = "store_unavailable"
	// ReasonOverloaded: more enrollments and renewals in flight than the
	// server takes at once (503 with Retry-After; nothing was done, the
	// token is not spent).
	ReasonOverloaded       Reason = "overloaded"
	ReasonBadRequest       Reason = "bad_request"
	ReasonMethodNotAllowed Reason = "method_not_allowed"
	ReasonInternal         Reason = "internal_error"
	// Trust bundle and CA rotation (pkg/server/issuers.go).
	ReasonBundleUnavailable  Reason = "bundle_unavailable"
	ReasonRotationInProgress Reason = "rotation_in_progress"
	ReasonActivationNotReady Reason = "activation_not_ready"
	ReasonRootOffline        Reason = "root_offline"
	ReasonRollbackInvalid    Reason = "rollback_invalid"
	// Revocation (pkg/server/revocation.go).
	ReasonRevocationReasonInvalid Reason = "revocation_reason_invalid"
)

// Operator surfaces (issue 21).
const (
	// ReasonHSMPINRefused: the token refused the PIN and the key store makes
	// no further login attempt until a reload (SIGHUP) or a restart.
	ReasonHSMPINRefused Reason = "hsm_pin_refused"
)

// AllReasons lists every reason code, in the order of the OpenAPI enum.
func AllReasons() []Reason {
	return append([]Reason{
		ReasonTokenMalformed, ReasonTokenExpired, ReasonTokenNotYetValid,
		ReasonTokenBadSignature, ReasonTokenUnknownIssuer, ReasonTokenWrongAudience,
		ReasonTokenReplayed, ReasonPolicyDenied, ReasonCSRMalformed,
		ReasonCSRBadSignature, ReasonCSRWeakKey, ReasonCSRForbiddenExtension,
		ReasonTTLTooLong, ReasonCertificateRevoked, ReasonNotFound,
		ReasonUnauthorized, ReasonForbidden, ReasonBodyTooLarge,
		ReasonHSMUnavailable, ReasonStoreUnavailable, ReasonOverloaded, ReasonBadRequest,
		ReasonMethodNotAllowed, ReasonInternal,
		ReasonBundleUnavailable, ReasonRotationInProgress, ReasonActivationNotReady,
		ReasonRootOffline, ReasonRollbackInvalid,
		ReasonRevocationReasonInvalid,
		ReasonTokenIssuerUnavailable, ReasonTTLInvalid, ReasonKeyReused,
		ReasonJWTKeyUnavailable,
		ReasonRollbackUnsafe,
		ReasonIdentityOnHold, ReasonSPIFFEIDInvalid, ReasonHoldInvalid, ReasonIdentityNotOnHold,
		ReasonHSMPINRefused, ReasonHSMUnsupported,
		// Renewal lineage (renew.go).
		ReasonCertificateSuperseded, ReasonReauthenticationRequired,
	}, AuthzReasons()...)
}
