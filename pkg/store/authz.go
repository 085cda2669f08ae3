package store

import (
	"context"
	"errors"
	"time"
)

// ErrSameActor means an emergency override's approver is the actor who
// requested it: overrides need two people. It does not wrap ErrConflict.
var ErrSameActor = errors.New("store: the approver requested this override")

// MaxAuthzOverrideTTL is the longest an emergency override may stay active,
// and how long a pending one may wait for its approval.
const MaxAuthzOverrideTTL = 24 * time.Hour

// AuthzOverrideState is where an emergency override is, derived from its
// record and a time (AuthzOverride.State).
type AuthzOverrideState string

// The states of an emergency override.
const (
	// OverridePending: requested, waiting for a second admin's approval.
	OverridePending AuthzOverrideState = "pending"
	// OverrideActive: approved, allowing calls until Until.
	OverrideActive AuthzOverrideState = "active"
	// OverrideEnded: ended by an admin before it expired.
	OverrideEnded AuthzOverrideState = "ended"
	// OverrideExpired: Until passed, or never approved within
	// MaxAuthzOverrideTTL of its request.
	OverrideExpired AuthzOverrideState = "expired"
)

// AuthzOverride is an emergency override of the service-to-service
// authorization policy: Source may call Endpoint of Service for TTL from its
// approval.
type AuthzOverride struct {
	ID          string // chosen by the caller (random), unique
	Source      string // exact SPIFFE ID
	Service     string
	Endpoint    string
	Reason      string // why, as the requester wrote it
	TTL         time.Duration
	RequestedBy string
	RequestedAt time.Time
	ApprovedBy  string    // "" until approved
	ApprovedAt  time.Time // zero until approved
	Until       time.Time // ApprovedAt + TTL; zero until approved
	EndedBy     string    // "" unless ended
	EndedAt     time.Time // zero unless ended
}

// State derives the override's state at now.
func (o AuthzOverride) State(now time.Time) AuthzOverrideState {
	switch {
	case !o.EndedAt.IsZero():
		return OverrideEnded
	case o.ApprovedAt.IsZero() && o.RequestedAt.Add(MaxAuthzOverrideTTL).After(now):
		return OverridePending
	case o.ApprovedAt.IsZero():
		return OverrideExpired
	case o.Until.After(now):
		return OverrideActive
	}
	return OverrideExpired
}

// AuthzReportCount is one per-minute aggregate of decisions a service
// reported: how many requests from Source to Endpoint got Decision for
// Reason during the minute starting at Minute.
type AuthzReportCount struct {
	Service  string
	Minute   time.Time // truncated to the minute by the store
	Source   string
	Endpoint string
	Decision string
	Reason   string
	Count    int64
}

// AuthzStore keeps emergency overrides and decision report aggregates of the
// service-to-service authorization (issue 19). State changes are conditional
// updates: two replicas approving or ending the same override at once cannot
// both succeed.
type AuthzStore interface {
	// RequestAuthzOverride stores o as pending (the approval and end fields
	// are ignored) and appends e to the audit log in the same transaction.
	// ErrInvalidQuery if ID, Source, Service, Endpoint or RequestedBy is
	// empty, RequestedAt is zero, or TTL is not in (0, MaxAuthzOverrideTTL];
	// ErrConflict if the ID is taken.
	RequestAuthzOverride(ctx context.Context, o AuthzOverride, e AuditEntry) (AuthzOverride, AuditEntry, error)
	// ApproveAuthzOverride makes the pending override id active from at until
	// at + TTL, approved by `by`, and appends e in the same transaction.
	// ErrNotFound if no such override; ErrSameActor if `by` requested it;
	// ErrConflict if it is not pending at `at` (already approved, ended, or
	// expired unapproved). Nothing is appended on error.
	ApproveAuthzOverride(ctx context.Context, id, by string, at time.Time, e AuditEntry) (AuthzOverride, AuditEntry, error)
	// EndAuthzOverride ends the override id, pending or active at `at`,
	// recording at and by, and appends e in the same transaction.
	// ErrNotFound if no such override; ErrConflict if it already ended or
	// expired.
	EndAuthzOverride(ctx context.Context, id, by string, at time.Time, e AuditEntry) (AuthzOverride, AuditEntry, error)
	// GetAuthzOverride returns one override, or ErrNotFound.
	GetAuthzOverride(ctx context.Context, id string) (AuthzOverride, error)
	// ActiveAuthzOverrides returns the overrides active at now (approved,
	// not ended, Until > now) of service, or of every service when service
	// is "", soonest-ending first, then by ID.
	ActiveAuthzOverrides(ctx context.Context, service string, now time.Time) ([]AuthzOverride, error)
	// ListAuthzOverrides returns up to limit overrides in any state (100
	// when limit <= 0, at most 1000), newest request first, then by ID
	// descending.
	ListAuthzOverrides(ctx context.Context, limit int) ([]AuthzOverride, error)
	// AddAuthzReportCounts adds each row's Count into the aggregate of its
	// (Service, Minute truncated to the minute, Source, Endpoint, Decision,
	// Reason), creating it at need, and appends e in the same transaction;
	// all rows or none. ErrInvalidQuery if a row has an empty Service,
	// Decision or Reason, a zero Minute or a negative Count.
	AddAuthzReportCounts(ctx context.Context, rows []AuthzReportCount, e AuditEntry) (AuditEntry, error)
	// ListAuthzReportCounts returns up to limit aggregates (10000 when limit
	// <= 0) of service with from <= Minute < to, ordered by Minute, Source,
	// Endpoint, Decision, Reason.
	ListAuthzReportCounts(ctx context.Context, service string, from, to time.Time, limit int) ([]AuthzReportCount, error)
}

// ValidAuthzOverride tells whether o may be requested (see
// AuthzStore.RequestAuthzOverride); the store implementations share it.
func ValidAuthzOverride(o AuthzOverride) bool {
	return o.ID != "" && o.Source != "" && o.Service != "" && o.Endpoint != "" &&
		o.RequestedBy != "" && !o.RequestedAt.IsZero() && o.TTL > 0 && o.TTL <= MaxAuthzOverrideTTL
}

// ValidAuthzReportCount tells whether r may be added (see
// AuthzStore.AddAuthzReportCounts).
func ValidAuthzReportCount(r AuthzReportCount) bool {
	return r.Service != "" && r.Decision != "" && r.Reason != "" && !r.Minute.IsZero() && r.Count >= 0
}
