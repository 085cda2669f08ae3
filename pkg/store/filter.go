package store

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Page sizes of ListCertificates.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// CertificateFilter selects certificates for ListCertificates. Zero fields do
// not filter; the filters that are set all apply (AND).
type CertificateFilter struct {
	Identity       string // exact SPIFFE ID
	IdentityPrefix string // SPIFFE IDs starting with this (byte-wise)
	// Status partitions the certificates at Now: "active" (stored active and
	// NotAfter > Now), "expired" (stored active and NotAfter <= Now), "revoked"
	// (revoked, whether expired or not). Empty means all.
	Status CertStatus
	// ExpiringWithin selects active certificates with Now < NotAfter <= Now+d.
	ExpiringWithin time.Duration
	IssuerID       string
	IssuedSince    time.Time // CreatedAt >= IssuedSince
	// Repository selects certificates whose provenance names this CI
	// repository (the token's repository claim), exactly.
	Repository string
	Limit      int       // page size: DefaultListLimit if <= 0, at most MaxListLimit
	Cursor     string    // "" for the first page, else the next value of the previous page
	Now        time.Time // required when Status is active or expired, or ExpiringWithin is set
}

// ListQuery is a CertificateFilter checked and decoded, ready for an
// implementation to turn into SQL.
type ListQuery struct {
	CertificateFilter
	Limit int // the effective page size
	// After is set when a cursor was given: the page holds rows strictly
	// older than (AfterCreatedAt, AfterSerial) in (created_at, serial) order.
	After          bool
	AfterCreatedAt time.Time
	AfterSerial    string
}

// Query checks f and decodes its cursor. Errors wrap ErrInvalidQuery.
func (f CertificateFilter) Query() (ListQuery, error) {
	q := ListQuery{CertificateFilter: f, Limit: f.Limit}
	switch f.Status {
	case "", CertActive, CertRevoked, CertExpired:
	default:
		return ListQuery{}, fmt.Errorf("%w: unknown status %q", ErrInvalidQuery, f.Status)
	}
	if f.ExpiringWithin < 0 {
		return ListQuery{}, fmt.Errorf("%w: negative expiring_within", ErrInvalidQuery)
	}
	if f.Now.IsZero() && (f.Status == CertActive || f.Status == CertExpired || f.ExpiringWithin > 0) {
		return ListQuery{}, fmt.Errorf("%w: status or expiry filter without a current time", ErrInvalidQuery)
	}
	if q.Limit <= 0 {
		q.Limit = DefaultListLimit
	}
	if q.Limit > MaxListLimit {
		q.Limit = MaxListLimit
	}
	if f.Cursor != "" {
		at, serial, err := decodeCursor(f.Cursor)
		if err != nil {
			return ListQuery{}, err
		}
		q.After, q.AfterCreatedAt, q.AfterSerial = true, at, serial
	}
	return q, nil
}

// NextCursor is the cursor of the page after one whose last row is last.
func NextCursor(last Certificate) string {
	raw := strconv.FormatInt(last.CreatedAt.UnixMicro(), 10) + "." + last.Serial
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(s string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: malformed cursor", ErrInvalidQuery)
	}
	micros, serial, ok := strings.Cut(string(raw), ".")
	if !ok || serial == "" || len(serial) > 64 {
		return time.Time{}, "", fmt.Errorf("%w: malformed cursor", ErrInvalidQuery)
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: malformed cursor", ErrInvalidQuery)
	}
	for _, r := range serial {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return time.Time{}, "", fmt.Errorf("%w: malformed cursor", ErrInvalidQuery)
		}
	}
	return time.UnixMicro(us).UTC(), serial, nil
}

// EffectiveStatus is c's status at now: revoked if revoked, else expired once
// NotAfter <= now, else active. It matches the Status filter of
// ListCertificates.
func (c Certificate) EffectiveStatus(now time.Time) CertStatus {
	switch {
	case c.Status == CertRevoked:
		return CertRevoked
	case !c.NotAfter.After(now):
		return CertExpired
	default:
		return CertActive
	}
}
