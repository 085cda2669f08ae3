package store

import (
	"context"
	"time"
)

// ExpiryBuckets are the upper bounds, from now, of CertificateStats'
// expiry histogram of active certificates: within 1h, 6h, 24h, 3d, 7d.
var ExpiryBuckets = []time.Duration{time.Hour, 6 * time.Hour, 24 * time.Hour, 3 * 24 * time.Hour, 7 * 24 * time.Hour}

// CertificateStats is the inventory at a glance, as of Now.
type CertificateStats struct {
	Now time.Time
	// ByStatus counts certificates by effective status (active, expired,
	// revoked).
	ByStatus map[CertStatus]int64
	// Expiring[i] counts active certificates with NotAfter in
	// (Now+ExpiryBuckets[i-1], Now+ExpiryBuckets[i]] (from Now for i = 0).
	Expiring []int64
	// IssuedSince counts certificates created at or after Since.
	Since       time.Time
	IssuedSince int64
	// DeniedSince counts denied decisions (any action) at or after Since.
	DeniedSince int64
}

// InventoryReader is the inventory at a glance and the recent denials: what
// the dashboard, GET /v1/denials and the inventory metrics read. Part of
// Store, so every store has it (no capability found by type assertion).
type InventoryReader interface {
	// CertificateStats counts the inventory as of now (see
	// CertificateStats), with issuance and denials counted from since.
	CertificateStats(ctx context.Context, now, since time.Time) (CertificateStats, error)
	// Denials groups the denied decisions of the audit log that q selects,
	// most recent group first, at most q.EffectiveLimit() groups.
	Denials(ctx context.Context, q DenialQuery) ([]DenialGroup, error)
}
