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
	// Repository selects certificates whose lineage's enrollment names this
	// CI repository (the token's repository claim), exactly: renewals
	// included (Certificate.Repository).
	Repository string
	// Lineage selects the certificates of one lineage (Certificate.Lineage,
	// the serial of its first certificate).
	Lineage string
	Limit   int       // page size: DefaultListLimit if <= 0, at most MaxListLimit
	Cursor  string    // "" for the first page, else the next value of the previous page
	Now     time.Time // required when Status is active or expired, or ExpiringWithin is set
}

// ListOrder is the order of a ListCertificates page, chosen by the filter
// so that every page is one bounded index range scan.
type ListOrder string

// The orders of ListCertificates.
const (
	// OrderNewest is newest first: CreatedAt descending, then Serial
	// descending. Every filter not named below.
	OrderNewest ListOrder = "newest"
	// OrderIdentity is by SPIFFE ID ascending (byte-wise), newest first
	// within one identity: IdentityPrefix without Identity.
	OrderIdentity ListOrder = "identity"
	// OrderExpiry is soonest-expiring first: NotAfter ascending, then
	// Serial ascending. ExpiringWithin without Identity, IdentityPrefix,
	// Repository or Lineage (those select by their own index, newest first or by
	// identity).
	OrderExpiry ListOrder = "expiry"
)

// Order is the order ListCertificates returns f's pages in.
func (f CertificateFilter) Order() ListOrder {
	switch {
	case f.Identity == "" && f.IdentityPrefix != "":
		return OrderIdentity
	case f.Identity == "" && f.Repository == "" && f.Lineage == "" && f.ExpiringWithin > 0:
		return OrderExpiry
	}
	return OrderNewest
}

// ListQuery is a CertificateFilter checked and decoded, ready for an
// implementation to turn into SQL.
type ListQuery struct {
	CertificateFilter
	Limit int       // the effective page size
	Order ListOrder // f.Order()
	// After is set when a cursor was given: the page holds the rows strictly
	// after the cursor's row in Order: (AfterCreatedAt, AfterSerial) for
	// OrderNewest; (AfterSPIFFEID, AfterCreatedAt, AfterSerial) for
	// OrderIdentity; (AfterNotAfter, AfterSerial) for OrderExpiry.
	After          bool
	AfterCreatedAt time.Time
	AfterSerial    string
	AfterSPIFFEID  string
	AfterNotAfter  time.Time
}

// Query checks f and decodes its cursor. Errors wrap ErrInvalidQuery.
func (f CertificateFilter) Query() (ListQuery, error) {
	q := ListQuery{CertificateFilter: f, Limit: f.Limit, Order: f.Order()}
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
		if err := q.decodeCursor(f.Cursor); err != nil {
			return ListQuery{}, err
		}
	}
	return q, nil
}

// NextCursor is the cursor of the OrderNewest page after one whose last row
// is last.
func NextCursor(last Certificate) string {
	raw := strconv.FormatInt(last.CreatedAt.UnixMicro(), 10) + "." + last.Serial
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// Cursor prefixes of the orders other than OrderNewest, whose cursors start
// with a digit or a minus sign.
const (
	identityCursor = "i."
	expiryCursor   = "e."
)

// NextCursor is the cursor of the page after one whose last row is last, in
// q's order. A cursor only continues a query of the same order; Query
// refuses it for another.
func (q ListQuery) NextCursor(last Certificate) string {
	switch q.Order {
	case OrderIdentity:
		raw := identityCursor + strconv.FormatInt(last.CreatedAt.UnixMicro(), 10) + "." + last.Serial + "." + last.SPIFFEID
		return base64.RawURLEncoding.EncodeToString([]byte(raw))
	case OrderExpiry:
		raw := expiryCursor + strconv.FormatInt(last.NotAfter.UnixMicro(), 10) + "." + last.Serial
		return base64.RawURLEncoding.EncodeToString([]byte(raw))
	}
	return NextCursor(last)
}

// decodeCursor fills q's After fields from a cursor of q's order.
func (q *ListQuery) decodeCursor(s string) error {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) > 4096 {
		return fmt.Errorf("%w: malformed cursor", ErrInvalidQuery)
	}
	str := string(raw)
	var prefix string
	switch {
	case strings.HasPrefix(str, identityCursor):
		prefix = identityCursor
	case strings.HasPrefix(str, expiryCursor):
		prefix = expiryCursor
	}
	want := map[ListOrder]string{OrderNewest: "", OrderIdentity: identityCursor, OrderExpiry: expiryCursor}[q.Order]
	if prefix != want {
		return fmt.Errorf("%w: the cursor belongs to a query with other filters", ErrInvalidQuery)
	}
	str = strings.TrimPrefix(str, prefix)
	var id string
	if q.Order == OrderIdentity {
		parts := strings.SplitN(str, ".", 3)
		if len(parts) != 3 || parts[2] == "" {
			return fmt.Errorf("%w: malformed cursor", ErrInvalidQuery)
		}
		str, id = parts[0]+"."+parts[1], parts[2]
	}
	at, serial, err := decodeTimeSerial(str)
	if err != nil {
		return err
	}
	q.After, q.AfterSerial, q.AfterSPIFFEID = true, serial, id
	if q.Order == OrderExpiry {
		q.AfterNotAfter = at
	} else {
		q.AfterCreatedAt = at
	}
	return nil
}

// decodeTimeSerial decodes "<unix micros>.<lowercase hex serial>".
func decodeTimeSerial(raw string) (time.Time, string, error) {
	micros, serial, ok := strings.Cut(raw, ".")
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
