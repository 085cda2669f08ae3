package sqlstore

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const holdColumns = `id, spiffe_id, reason, placed_by, placed_at, until, released_at, coalesce(released_by, '')`

func scanHold(row Row) (store.Hold, error) {
	var h store.Hold
	var placed, until, released NullTime
	if err := row.Scan(&h.ID, &h.SPIFFEID, &h.Reason, &h.PlacedBy, &placed, &until, &released, &h.ReleasedBy); err != nil {
		return store.Hold{}, err
	}
	h.PlacedAt, h.Until, h.ReleasedAt = placed.Time, until.Time, released.Time
	return h, nil
}

// PlaceHold stores h and appends e in one transaction; see store.HoldStore.
func (o *Ops) PlaceHold(ctx context.Context, h store.Hold, e store.AuditEntry) (store.Hold, store.AuditEntry, error) {
	if h.SPIFFEID == "" || h.PlacedAt.IsZero() || !h.Until.After(h.PlacedAt) {
		return store.Hold{}, store.AuditEntry{}, o.errorf("place hold: want a SPIFFE ID and until after placed_at: %w", store.ErrInvalidQuery)
	}
	var out store.Hold
	var entry store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		var err error
		out, err = scanHold(tx.QueryRow(ctx, `
			INSERT INTO identity_holds (spiffe_id, reason, placed_by, placed_at, until)
			VALUES ($1, $2, $3, $4, $5)
			RETURNING `+holdColumns,
			h.SPIFFEID, h.Reason, h.PlacedBy, o.time(h.PlacedAt), o.time(h.Until)))
		if err != nil {
			return o.errorf("place hold on %s: %w", h.SPIFFEID, o.d.MapErr(err))
		}
		entry, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return store.Hold{}, store.AuditEntry{}, err
	}
	return out, entry, nil
}

// ActiveHold returns the identity's hold in force at now that ends last
// (index identity_holds_identity_idx).
func (o *Ops) ActiveHold(ctx context.Context, spiffeID string, now time.Time) (store.Hold, error) {
	h, err := scanHold(o.r.QueryRow(ctx, `
		SELECT `+holdColumns+` FROM identity_holds
		WHERE spiffe_id = $1 AND released_at IS NULL AND until > $2
		ORDER BY until DESC, id DESC LIMIT 1`, spiffeID, o.time(now)))
	if o.d.IsNoRows(err) {
		return store.Hold{}, o.errorf("hold on %s: %w", spiffeID, store.ErrNotFound)
	}
	if err != nil {
		return store.Hold{}, o.errorf("hold on %s: %w", spiffeID, o.d.MapErr(err))
	}
	return h, nil
}

// ActiveHolds lists the holds in force at now, soonest-ending first (index
// identity_holds_until_idx).
func (o *Ops) ActiveHolds(ctx context.Context, now time.Time, limit int) ([]store.Hold, error) {
	if limit <= 0 {
		limit = 1000
	}
	list, err := queryAll(ctx, o, o.r, scanHold, `
		SELECT `+holdColumns+` FROM identity_holds
		WHERE released_at IS NULL AND until > $1
		ORDER BY until, id LIMIT $2`, o.time(now), limit)
	if err != nil {
		return nil, o.errorf("active holds: %w", err)
	}
	return list, nil
}

// ReleaseHolds releases the identity's holds in force at `at` and appends e
// in one transaction (index identity_holds_identity_idx).
func (o *Ops) ReleaseHolds(ctx context.Context, spiffeID string, at time.Time, by string, e store.AuditEntry) ([]store.Hold, store.AuditEntry, error) {
	if at.IsZero() || by == "" {
		return nil, store.AuditEntry{}, o.errorf("release holds: want a time and who: %w", store.ErrInvalidQuery)
	}
	var list []store.Hold
	var entry store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		var err error
		list, err = queryAll(ctx, o, tx, scanHold, `
			UPDATE identity_holds SET released_at = $2, released_by = $3
			WHERE spiffe_id = $1 AND released_at IS NULL AND until > $2
			RETURNING `+holdColumns, spiffeID, o.time(at), by)
		if err != nil {
			return o.errorf("release holds on %s: %w", spiffeID, err)
		}
		if len(list) == 0 {
			return o.errorf("release holds on %s: none in force: %w", spiffeID, store.ErrNotFound)
		}
		slices.SortFunc(list, func(a, b store.Hold) int { return cmp.Compare(a.ID, b.ID) })
		entry, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return nil, store.AuditEntry{}, err
	}
	return list, entry, nil
}
