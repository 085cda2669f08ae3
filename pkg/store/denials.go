package store

import "time"

// DenialQuery selects denied decisions from the audit log for Denials.
type DenialQuery struct {
	// Since is required: entries with Time >= Since.
	Since time.Time
	// Actions restricts the audit actions (enroll, renew, jwt, authz ...);
	// empty means all.
	Actions []string
	// Limit caps the groups returned (DefaultDenialGroups when <= 0, at most
	// MaxDenialGroups).
	Limit int
}

// Bounds of Denials.
const (
	DefaultDenialGroups = 100
	MaxDenialGroups     = 1000
)

// DenialGroup is every denied decision of one action, by one actor, for one
// reason, within a DenialQuery's window.
type DenialGroup struct {
	Action string
	Actor  string // who asked: token subject, SPIFFE ID, operator
	Reason string
	Count  int64
	First  time.Time
	Last   time.Time
	// LastSeq, LastTarget, LastRequestID and LastDetails are those of the
	// most recent entry of the group.
	LastSeq       int64
	LastTarget    string
	LastRequestID string
	LastDetails   []byte
}

// EffectiveLimit is the number of groups Denials returns at most for q.
func (q DenialQuery) EffectiveLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultDenialGroups
	case q.Limit > MaxDenialGroups:
		return MaxDenialGroups
	}
	return q.Limit
}
