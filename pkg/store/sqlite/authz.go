package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"database/sql"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const overrideColumns = `id, source, service, endpoint, reason, ttl_us, requested_by, requested_at,
	coalesce(approved_by, ''), approved_at, until, coalesce(ended_by, ''), ended_at`

func scanOverride(row scanner) (store.AuthzOverride, error) {
	var o store.AuthzOverride
	var ttl int64
	var requested, approved, until, ended sql.NullInt64
	if err := row.Scan(&o.ID, &o.Source, &o.Service, &o.Endpoint, &o.Reason, &ttl, &o.RequestedBy, &requested,
		&o.ApprovedBy, &approved, &until, &o.EndedBy, &ended); err != nil {
		return store.AuthzOverride{}, err
	}
	o.TTL = time.Duration(ttl) * time.Microsecond
	o.RequestedAt, o.ApprovedAt, o.Until, o.EndedAt = fromUS(requested), fromUS(approved), fromUS(until), fromUS(ended)
	return o, nil
}

// RequestAuthzOverride stores o as pending and appends e in one transaction;
// see store.AuthzStore.
func (s *Store) RequestAuthzOverride(ctx context.Context, o store.AuthzOverride, e store.AuditEntry) (store.AuthzOverride, store.AuditEntry, error) {
	if !store.ValidAuthzOverride(o) {
		return store.AuthzOverride{}, store.AuditEntry{}, fmt.Errorf("sqlite: request override: want id, source, service, endpoint, requester, time and a ttl up to %v: %w", store.MaxAuthzOverrideTTL, store.ErrInvalidQuery)
	}
	var out store.AuthzOverride
	var entry store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = scanOverride(tx.QueryRowContext(ctx, `
			INSERT INTO authz_overrides (id, source, service, endpoint, reason, ttl_us, requested_by, requested_at)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
			RETURNING `+overrideColumns,
			o.ID, o.Source, o.Service, o.Endpoint, o.Reason, o.TTL.Microseconds(), o.RequestedBy, us(o.RequestedAt)))
		if err != nil {
			return fmt.Errorf("sqlite: request override %s: %w", o.ID, mapErr(err))
		}
		entry, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuthzOverride{}, store.AuditEntry{}, err
	}
	return out, entry, nil
}

// overrideRefusal explains, inside tx, why a conditional update of override
// id touched no row: ErrNotFound, ErrSameActor (when sameActor applies) or
// ErrConflict.
func overrideRefusal(ctx context.Context, tx *sql.Tx, id, by string, sameActor bool) error {
	o, err := scanOverride(tx.QueryRowContext(ctx, `SELECT `+overrideColumns+` FROM authz_overrides WHERE id = ?1`, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case err != nil:
		return mapErr(err)
	case sameActor && o.RequestedBy == by:
		return store.ErrSameActor
	}
	return store.ErrConflict
}

// ApproveAuthzOverride activates a pending override with a conditional
// update (primary key); see store.AuthzStore.
func (s *Store) ApproveAuthzOverride(ctx context.Context, id, by string, at time.Time, e store.AuditEntry) (store.AuthzOverride, store.AuditEntry, error) {
	if id == "" || by == "" || at.IsZero() {
		return store.AuthzOverride{}, store.AuditEntry{}, fmt.Errorf("sqlite: approve override: want an id, who and a time: %w", store.ErrInvalidQuery)
	}
	var out store.AuthzOverride
	var entry store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = scanOverride(tx.QueryRowContext(ctx, `
			UPDATE authz_overrides
			SET approved_by = ?2, approved_at = ?3, until = ?3 + ttl_us
			WHERE id = ?1 AND approved_at IS NULL AND ended_at IS NULL AND requested_by <> ?2 AND requested_at > ?4
			RETURNING `+overrideColumns, id, by, us(at), us(at.Add(-store.MaxAuthzOverrideTTL))))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: approve override %s: %w", id, overrideRefusal(ctx, tx, id, by, true))
		}
		if err != nil {
			return fmt.Errorf("sqlite: approve override %s: %w", id, mapErr(err))
		}
		entry, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuthzOverride{}, store.AuditEntry{}, err
	}
	return out, entry, nil
}

// EndAuthzOverride ends a pending or active override with a conditional
// update (primary key); see store.AuthzStore.
func (s *Store) EndAuthzOverride(ctx context.Context, id, by string, at time.Time, e store.AuditEntry) (store.AuthzOverride, store.AuditEntry, error) {
	if id == "" || by == "" || at.IsZero() {
		return store.AuthzOverride{}, store.AuditEntry{}, fmt.Errorf("sqlite: end override: want an id, who and a time: %w", store.ErrInvalidQuery)
	}
	var out store.AuthzOverride
	var entry store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = scanOverride(tx.QueryRowContext(ctx, `
			UPDATE authz_overrides SET ended_by = ?2, ended_at = ?3
			WHERE id = ?1 AND ended_at IS NULL
			  AND ((approved_at IS NULL AND requested_at > ?4) OR until > ?3)
			RETURNING `+overrideColumns, id, by, us(at), us(at.Add(-store.MaxAuthzOverrideTTL))))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: end override %s: %w", id, overrideRefusal(ctx, tx, id, by, false))
		}
		if err != nil {
			return fmt.Errorf("sqlite: end override %s: %w", id, mapErr(err))
		}
		entry, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuthzOverride{}, store.AuditEntry{}, err
	}
	return out, entry, nil
}

// GetAuthzOverride returns one override (primary key).
func (s *Store) GetAuthzOverride(ctx context.Context, id string) (store.AuthzOverride, error) {
	o, err := scanOverride(s.r.QueryRowContext(ctx, `SELECT `+overrideColumns+` FROM authz_overrides WHERE id = ?1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.AuthzOverride{}, fmt.Errorf("sqlite: override %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.AuthzOverride{}, fmt.Errorf("sqlite: override %s: %w", id, mapErr(err))
	}
	return o, nil
}

// ActiveAuthzOverrides lists the overrides active at now (index
// authz_overrides_service_idx).
func (s *Store) ActiveAuthzOverrides(ctx context.Context, service string, now time.Time) ([]store.AuthzOverride, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT `+overrideColumns+` FROM authz_overrides
		WHERE approved_at IS NOT NULL AND ended_at IS NULL AND until > ?2 AND (?1 = '' OR service = ?1)
		ORDER BY until, id LIMIT 10000`, service, us(now))
	if err != nil {
		return nil, fmt.Errorf("sqlite: active overrides: %w", mapErr(err))
	}
	list, err := collectRows(rows, scanOverride)
	if err != nil {
		return nil, fmt.Errorf("sqlite: active overrides: %w", mapErr(err))
	}
	return list, nil
}

// ListAuthzOverrides lists overrides, newest first (index
// authz_overrides_requested_idx).
func (s *Store) ListAuthzOverrides(ctx context.Context, limit int) ([]store.AuthzOverride, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	rows, err := s.r.QueryContext(ctx, `
		SELECT `+overrideColumns+` FROM authz_overrides
		ORDER BY requested_at DESC, id DESC LIMIT ?1`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list overrides: %w", mapErr(err))
	}
	list, err := collectRows(rows, scanOverride)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list overrides: %w", mapErr(err))
	}
	return list, nil
}

// AddAuthzReportCounts upserts the aggregates in one transaction (primary
// key of authz_report_counts as the conflict target).
func (s *Store) AddAuthzReportCounts(ctx context.Context, rows []store.AuthzReportCount, e store.AuditEntry) (store.AuditEntry, error) {
	for _, r := range rows {
		if !store.ValidAuthzReportCount(r) {
			return store.AuditEntry{}, fmt.Errorf("sqlite: add report counts: want service, minute, decision, reason and a count >= 0: %w", store.ErrInvalidQuery)
		}
	}
	var entry store.AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, r := range rows {
			if _, err := tx.ExecContext(ctx, `
				INSERT INTO authz_report_counts (service, minute, source, endpoint, decision, reason, count)
				VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
				ON CONFLICT (service, minute, source, endpoint, decision, reason)
				DO UPDATE SET count = authz_report_counts.count + excluded.count`,
				r.Service, us(r.Minute.UTC().Truncate(time.Minute)), r.Source, r.Endpoint, r.Decision, r.Reason, r.Count); err != nil {
				return fmt.Errorf("sqlite: add report counts: %w", mapErr(err))
			}
		}
		var err error
		entry, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return entry, nil
}

// ListAuthzReportCounts lists one service's aggregates in a minute range
// (primary key of authz_report_counts: service, minute lead).
func (s *Store) ListAuthzReportCounts(ctx context.Context, service string, from, to time.Time, limit int) ([]store.AuthzReportCount, error) {
	if from.IsZero() || to.IsZero() {
		return nil, fmt.Errorf("sqlite: list report counts: want a time range: %w", store.ErrInvalidQuery)
	}
	if limit <= 0 {
		limit = 10000
	}
	rows, err := s.r.QueryContext(ctx, `
		SELECT service, minute, source, endpoint, decision, reason, count FROM authz_report_counts
		WHERE service = ?1 AND minute >= ?2 AND minute < ?3
		ORDER BY minute, source, endpoint, decision, reason LIMIT ?4`, service, us(from), us(to), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list report counts: %w", mapErr(err))
	}
	list, err := collectRows(rows, func(r scanner) (store.AuthzReportCount, error) {
		var c store.AuthzReportCount
		var minute sql.NullInt64
		if err := r.Scan(&c.Service, &minute, &c.Source, &c.Endpoint, &c.Decision, &c.Reason, &c.Count); err != nil {
			return store.AuthzReportCount{}, err
		}
		c.Minute = fromUS(minute)
		return c, nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list report counts: %w", mapErr(err))
	}
	return list, nil
}
