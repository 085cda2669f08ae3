package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const holdColumns = `id, spiffe_id, reason, placed_by, placed_at, until, released_at, coalesce(released_by, '')`

func scanHold(row scanner) (store.Hold, error) {
	var h store.Hold
	var placed, until, released sql.NullInt64
	if err := row.Scan(&h.ID, &h.SPIFFEID, &h.Reason, &h.PlacedBy, &placed, &until, &released, &h.ReleasedBy); err != nil {
		return store.Hold{}, err
	}
	h.PlacedAt, h.Until, h.ReleasedAt = fromUS(placed), fromUS(until), fromUS(released)
	return h, nil
}

// PlaceHold stores h and appends e in one transaction; see store.HoldStore.
func (s *Store) PlaceHold(ctx context.Context, h store.Hold, e store.AuditEntry) (store.Hold, store.AuditEntry, error) {
	if h.SPIFFEID == "" || h.PlacedAt.IsZero() || !h.Until.After(h.PlacedAt) {
		return store.Hold{}, store.AuditEntry{}, fmt.Errorf("sqlite: place hold: want a SPIFFE ID and until after placed_at: %w", store.ErrInvalidQuery)
	}
	var out store.Hold
	var entry store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = scanHold(tx.QueryRowContext(ctx, `
			INSERT INTO identity_holds (spiffe_id, reason, placed_by, placed_at, until)
			VALUES (?, ?, ?, ?, ?)
			RETURNING `+holdColumns,
			h.SPIFFEID, h.Reason, h.PlacedBy, us(h.PlacedAt), us(h.Until)))
		if err != nil {
			return fmt.Errorf("sqlite: place hold on %s: %w", h.SPIFFEID, mapErr(err))
		}
		entry, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.Hold{}, store.AuditEntry{}, err
	}
	return out, entry, nil
}

// ActiveHold returns the identity's hold in force at now that ends last
// (index identity_holds_identity_idx).
func (s *Store) ActiveHold(ctx context.Context, spiffeID string, now time.Time) (store.Hold, error) {
	h, err := scanHold(s.readRow(ctx, `
		SELECT `+holdColumns+` FROM identity_holds
		WHERE spiffe_id = ? AND released_at IS NULL AND until > ?
		ORDER BY until DESC, id DESC LIMIT 1`, spiffeID, us(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Hold{}, fmt.Errorf("sqlite: hold on %s: %w", spiffeID, store.ErrNotFound)
	}
	if err != nil {
		return store.Hold{}, fmt.Errorf("sqlite: hold on %s: %w", spiffeID, mapErr(err))
	}
	return h, nil
}

// ActiveHolds lists the holds in force at now, soonest-ending first (index
// identity_holds_until_idx).
func (s *Store) ActiveHolds(ctx context.Context, now time.Time, limit int) ([]store.Hold, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.r.QueryContext(ctx, `
		SELECT `+holdColumns+` FROM identity_holds
		WHERE released_at IS NULL AND until > ?
		ORDER BY until, id LIMIT ?`, us(now), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: active holds: %w", mapErr(err))
	}
	list, err := collectRows(rows, scanHold)
	if err != nil {
		return nil, fmt.Errorf("sqlite: active holds: %w", mapErr(err))
	}
	return list, nil
}

// ReleaseHolds releases the identity's holds in force at `at` and appends e
// in one transaction (index identity_holds_identity_idx).
func (s *Store) ReleaseHolds(ctx context.Context, spiffeID string, at time.Time, by string, e store.AuditEntry) ([]store.Hold, store.AuditEntry, error) {
	if at.IsZero() || by == "" {
		return nil, store.AuditEntry{}, fmt.Errorf("sqlite: release holds: want a time and who: %w", store.ErrInvalidQuery)
	}
	var list []store.Hold
	var entry store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `
			UPDATE identity_holds SET released_at = ?, released_by = ?
			WHERE spiffe_id = ? AND released_at IS NULL AND until > ?
			RETURNING `+holdColumns, us(at), by, spiffeID, us(at))
		if err != nil {
			return fmt.Errorf("sqlite: release holds on %s: %w", spiffeID, mapErr(err))
		}
		list, err = collectRows(rows, scanHold)
		if err != nil {
			return fmt.Errorf("sqlite: release holds on %s: %w", spiffeID, mapErr(err))
		}
		if len(list) == 0 {
			return fmt.Errorf("sqlite: release holds on %s: none in force: %w", spiffeID, store.ErrNotFound)
		}
		slices.SortFunc(list, func(a, b store.Hold) int { return cmp.Compare(a.ID, b.ID) })
		entry, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return nil, store.AuditEntry{}, err
	}
	return list, entry, nil
}
