package store

import (
	"context"
	"time"
)

// JWTKeyState is where a JWT-SVID signing key is in its lifecycle.
type JWTKeyState string

// The lifecycle of a JWT-SVID signing key: prepared (published in the bundle,
// not yet signing), active (the one key that signs), retiring (no longer
// signing, still published until every token it signed has expired),
// retired (gone from the bundle).
const (
	JWTKeyPrepared JWTKeyState = "prepared"
	JWTKeyActive   JWTKeyState = "active"
	JWTKeyRetiring JWTKeyState = "retiring"
	JWTKeyRetired  JWTKeyState = "retired"
)

// JWTKey is one JWT-SVID signing key as every replica sees it. The private
// key stays in the key store under KeyURI.
type JWTKey struct {
	KeyID     string // RFC 7638 JWK thumbprint (base64url SHA-256), the JWS kid
	KeyURI    string // where the private key lives (PKCS#11 or software URI)
	Alg       string // JWS algorithm: ES256, ES384 or RS256
	State     JWTKeyState
	PublicJWK []byte // the public key as a JSON JWK, stored byte for byte
	CreatedAt time.Time
	// ActivatedAt is when it started signing; zero while prepared.
	ActivatedAt time.Time
	// RetiringAt is when it stopped signing; zero while prepared or active.
	RetiringAt time.Time
	// RetiredAt is when it left the bundle; zero unless retired.
	RetiredAt time.Time
}

// JWTKeyStore keeps the lifecycle of JWT-SVID signing keys. At most one key
// is active and at most one prepared at any time, across all replicas; every
// change is appended to the audit log in the same transaction.
type JWTKeyStore interface {
	// InsertJWTKey records k (state prepared, or active for the first key)
	// with its audit entry. ErrConflict (and nothing is recorded) if the kid
	// is taken or another key already holds k's state (prepared or active).
	InsertJWTKey(ctx context.Context, k JWTKey, e AuditEntry) (AuditEntry, error)
	// ListJWTKeys returns every key, retired ones included, oldest first.
	ListJWTKeys(ctx context.Context) ([]JWTKey, error)
	// ActivateJWTKey makes the prepared key kid active at at and moves the
	// previously active key (if any) to previous, which is JWTKeyRetiring
	// (RetiringAt = at) or, in an emergency, JWTKeyRetired (RetiringAt =
	// RetiredAt = at), appending e, all in one transaction. ErrNotFound if
	// there is no such key, ErrConflict if it is not prepared.
	ActivateJWTKey(ctx context.Context, kid string, at time.Time, previous JWTKeyState, e AuditEntry) (AuditEntry, error)
	// RetireJWTKey moves the retiring key kid to retired at at, appending e.
	// ErrNotFound if there is no such key, ErrConflict if it is not retiring.
	RetireJWTKey(ctx context.Context, kid string, at time.Time, e AuditEntry) (AuditEntry, error)
}
