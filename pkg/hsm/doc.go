// Package hsm holds the CA's signing keys: inside a PKCS#11 token (crypto11;
// SoftHSM in tests) in production, or as PKCS#8 files in the data directory for
// the embedded development default. Every key is handed out as a crypto.Signer,
// found again by an RFC 7512 PKCS#11 URI or a software key URI. It is the only
// package that imports crypto11.
//
// Two stores implement KeyStore and pass one conformance suite:
//
//   - PKCS11Store (OpenPKCS11): keys generated on the token, CKA_SENSITIVE,
//     not CKA_EXTRACTABLE, sign-only (no decrypt, unwrap or derive),
//     labelled with the key name and a random 16-byte CKA_ID; URIs
//     pkcs11:token=<label>;object=<name>. Find also takes id= and ignores
//     descriptive attributes; it refuses other tokens and pin-value.
//   - SoftwareStore (OpenSoftware): <dir>/<name>.key.pem, PKCS#8 PEM, 0600 in a
//     0700 directory; URIs softkey:<name>.
//
// Key names are 1 to 128 characters of [A-Za-z0-9._-] starting with a letter
// or digit, in both stores. Delete destroys a key (both halves on a token);
// only rotation uses it, for the keys of a failed or abandoned rotation, and
// KeyLabels lists the keys a store holds, so stray keys can be found.
//
// # Tokens differ
//
// The key templates constrain the private half only, in ways every token
// tried accepts (SoftHSM, tpm2-pkcs11, opencryptoki; see keyTemplates), and
// Generate reads the private half's attributes back: a key weaker than
// asked (a token that ignored part of the template) is destroyed and
// reported as a *WeakKeyError naming the attribute. CheckKeyTypes checks
// the mechanisms a key type needs (C_GetMechanismList, C_GetMechanismInfo)
// and names the missing one. A token refusing a template, mechanism, curve
// or key size is ErrUnsupported: a configuration error, no reconnect.
// CKR_GENERAL_ERROR and CKR_FUNCTION_FAILED are ambiguous (tpm2-pkcs11
// refuses templates and signatures so; SoftHSM returns them now and then
// under load; a lost device too): from generation or signing, the store asks
// the token to find the key or name (no template involved); if it cannot,
// it is an outage, else the call is tried once more and a second failure is
// ErrUnsupported. KeyHealth records whether a key the CA needs could last
// sign, for readiness probes that must not sign.
//
// # Token failures
//
// When a PKCS#11 call reports that the token, module, session or login is gone
// (CKR_SESSION_HANDLE_INVALID, CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_REMOVED,
// CKR_DEVICE_ERROR, CKR_USER_NOT_LOGGED_IN, CKR_CRYPTOKI_NOT_INITIALIZED,
// CKR_OBJECT_HANDLE_INVALID, CKR_GENERAL_ERROR other than as above, ...),
// or a call outlives
// PKCS11Config.OpTimeout, the call returns an error wrapping ErrUnavailable
// and the store retires its crypto11 context. A later call closes it and
// configures a fresh one (new module initialisation if this was the module's
// last context, new login), waiting at most ReconnectTimeout; failed attempts
// back off exponentially (MinBackoff to MaxBackoff, read from an injected
// clock), and calls in between fail at once. Signers handed out before keep
// working after a reconnect: they find their key again by CKA_ID and label and
// check the public key is unchanged.
//
// SoftHSM specifics, found by experiment and relied on by the tests: a module
// only sees tokens that existed at C_Initialize; a token whose directory
// disappears reports CKR_OBJECT_HANDLE_INVALID and stays broken in that module
// instance until it is finalized and initialised again.
package hsm
