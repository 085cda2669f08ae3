package store

import (
	"context"
	"time"
)

// Hold refuses new certificates, renewals and JWT-SVIDs for one SPIFFE ID
// while it is in force: from PlacedAt until Until, unless released earlier.
type Hold struct {
	ID         int64 // assigned by the store
	SPIFFEID   string
	Reason     string // RFC 5280 reason name given with the hold
	PlacedBy   string // the operator, as in the audit log's actor
	PlacedAt   time.Time
	Until      time.Time
	ReleasedAt time.Time // zero unless released
	ReleasedBy string    // "" unless released
}

// InForce tells whether the hold applies at now: not released and Until
// still ahead.
func (h Hold) InForce(now time.Time) bool {
	return h.ReleasedAt.IsZero() && h.Until.After(now)
}

// HoldStore keeps identity holds. Every replica reads holds from the store,
// so a hold placed through one applies on all at once.
type HoldStore interface {
	// PlaceHold stores h (ID, ReleasedAt and ReleasedBy are ignored) and
	// appends e to the audit log in the same transaction, returning both as
	// stored. ErrInvalidQuery if h.Until is not after h.PlacedAt or
	// SPIFFEID is empty. Several holds of one identity may be in force; the
	// identity is held until the last of them ends.
	PlaceHold(ctx context.Context, h Hold, e AuditEntry) (Hold, AuditEntry, error)
	// ActiveHold returns the hold of spiffeID in force at now (not released,
	// Until > now) that ends last, or ErrNotFound if none is.
	ActiveHold(ctx context.Context, spiffeID string, now time.Time) (Hold, error)
	// ActiveHolds returns up to limit holds in force at now (1000 when limit
	// <= 0), soonest-ending first, then by ID.
	ActiveHolds(ctx context.Context, now time.Time, limit int) ([]Hold, error)
	// ReleaseHolds releases every hold of spiffeID in force at `at`,
	// recording at and by, and appends e to the audit log in the same
	// transaction, returning the released holds and the appended entry.
	// ErrNotFound (and nothing appended) if no hold of spiffeID is in force.
	ReleaseHolds(ctx context.Context, spiffeID string, at time.Time, by string, e AuditEntry) ([]Hold, AuditEntry, error)
}
