package store

import (
	"context"
	"encoding/json"
	"time"
)

// DashboardSession is one dashboard sign-in as every replica sees it. The
// browser's cookie carries a random session ID; the store keeps only its
// hash, so a copy of the table yields no usable cookie. Roles are not
// stored: the dashboard derives them from the current policy and Claims on
// every request.
type DashboardSession struct {
	// IDHash is the lowercase hex SHA-256 of the session ID in the cookie.
	IDHash string
	// Actor is who signed in ("corp-idp:alice", "local-admin").
	Actor string
	// TokenIssuer is the policy token issuer whose role entries grant the
	// roles; "" for the development setup's local admin.
	TokenIssuer string
	// Claims are the ID token's claims, a JSON object ({} when none).
	Claims json.RawMessage
	// Dev marks the development setup's local admin.
	Dev bool
	// CreatedAt is the sign-in; ExpiresAt its absolute end; IdleExpiresAt
	// the end if it is not used before then (never after ExpiresAt).
	CreatedAt, ExpiresAt, IdleExpiresAt time.Time
}

// SessionStore keeps dashboard sessions, shared by all replicas. A session
// is valid at now while now is before both its ExpiresAt and its
// IdleExpiresAt; an ended (deleted) session is never valid again.
type SessionStore interface {
	// CreateSession records s. IdleExpiresAt is stored capped at ExpiresAt.
	// ErrConflict if s.IDHash is taken.
	CreateSession(ctx context.Context, s DashboardSession) error
	// GetSession returns the session with idHash if it is valid at now;
	// ErrNotFound if there is none, or it ended or expired.
	GetSession(ctx context.Context, idHash string, now time.Time) (DashboardSession, error)
	// TouchSession moves the idle end of the session idHash, valid at now,
	// to idleUntil capped at its ExpiresAt (never earlier than it was).
	// ErrNotFound if there is no session valid at now.
	TouchSession(ctx context.Context, idHash string, now, idleUntil time.Time) error
	// DeleteSession ends the session idHash (logout); ErrNotFound if there
	// is none (already ended or pruned).
	DeleteSession(ctx context.Context, idHash string) error
	// PruneSessions deletes the sessions expired at or before now and
	// returns how many it deleted.
	PruneSessions(ctx context.Context, now time.Time) (int64, error)
}
