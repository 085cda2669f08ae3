package sqlstore

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

const overrideColumns = `id, source, service, endpoint, reason, ttl_us, requested_by, requested_at,
	coalesce(approved_by, ''), approved_at, until, coalesce(ended_by, ''), ended_at`

func scanOverride(row Row) (store.AuthzOverride, error) {
	var o store.AuthzOverride
	var ttl int64
	var requested, approved, until, ended NullTime
	if err := row.Scan(&o.ID, &o.Source, &o.Service, &o.Endpoint, &o.Reason, &ttl, &o.RequestedBy, &requested,
		&o.ApprovedBy, &approved, &until, &o.EndedBy, &ended); err != nil {
		return store.AuthzOverride{}, err
	}
	o.TTL = time.Duration(ttl) * time.Microsecond
	o.RequestedAt, o.ApprovedAt, o.Until, o.EndedAt = requested.Time, approved.Time, until.Time, ended.Time
	return o, nil
}

// RequestAuthzOverride stores o as pending and appends e in one transaction;
// see store.AuthzStore.
func (o *Ops) RequestAuthzOverride(ctx context.Context, ov store.AuthzOverride, e store.AuditEntry) (store.AuthzOverride, store.AuditEntry, error) {
	if !store.ValidAuthzOverride(ov) {
		return store.AuthzOverride{}, store.AuditEntry{}, o.errorf("request override: want id, source, service, endpoint, requester, time and a ttl up to %v: %w", store.MaxAuthzOverrideTTL, store.ErrInvalidQuery)
	}
	var out store.AuthzOverride
	var entry store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		var err error
		out, err = scanOverride(tx.QueryRow(ctx, `
			INSERT INTO authz_overrides (id, source, service, endpoint, reason, ttl_us, requested_by, requested_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			RETURNING `+overrideColumns,
			ov.ID, ov.Source, ov.Service, ov.Endpoint, ov.Reason, ov.TTL.Microseconds(), ov.RequestedBy, o.time(ov.RequestedAt)))
		if err != nil {
			return o.errorf("request override %s: %w", ov.ID, o.d.MapErr(err))
		}
		entry, err = tx.AppendAudit(ctx, e)
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
func (o *Ops) overrideRefusal(ctx context.Context, tx Tx, id, by string, sameActor bool) error {
	ov, err := scanOverride(tx.QueryRow(ctx, `SELECT `+overrideColumns+` FROM authz_overrides WHERE id = $1`, id))
	switch {
	case o.d.IsNoRows(err):
		return store.ErrNotFound
	case err != nil:
		return o.d.MapErr(err)
	case sameActor && ov.RequestedBy == by:
		return store.ErrSameActor
	}
	return store.ErrConflict
}

// changeOverride runs the conditional update of override id (args: id, by,
// at, at less the longest TTL) and appends e, in one transaction; what names
// the change, sameActor whether a refusal may be ErrSameActor.
func (o *Ops) changeOverride(ctx context.Context, what, update, id, by string, at time.Time, sameActor bool, e store.AuditEntry) (store.AuthzOverride, store.AuditEntry, error) {
	if id == "" || by == "" || at.IsZero() {
		return store.AuthzOverride{}, store.AuditEntry{}, o.errorf("%s override: want an id, who and a time: %w", what, store.ErrInvalidQuery)
	}
	var out store.AuthzOverride
	var entry store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		var err error
		out, err = scanOverride(tx.QueryRow(ctx, update+` RETURNING `+overrideColumns,
			id, by, o.time(at), o.time(at.Add(-store.MaxAuthzOverrideTTL))))
		if o.d.IsNoRows(err) {
			return o.errorf("%s override %s: %w", what, id, o.overrideRefusal(ctx, tx, id, by, sameActor))
		}
		if err != nil {
			return o.errorf("%s override %s: %w", what, id, o.d.MapErr(err))
		}
		entry, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return store.AuthzOverride{}, store.AuditEntry{}, err
	}
	return out, entry, nil
}

// ApproveAuthzOverride activates a pending override with a conditional
// update (primary key); see store.AuthzStore.
func (o *Ops) ApproveAuthzOverride(ctx context.Context, id, by string, at time.Time, e store.AuditEntry) (store.AuthzOverride, store.AuditEntry, error) {
	return o.changeOverride(ctx, "approve", `
		UPDATE authz_overrides
		SET approved_by = $2, approved_at = $3, until = `+o.d.AddMicros("$3", "ttl_us")+`
		WHERE id = $1 AND approved_at IS NULL AND ended_at IS NULL AND requested_by <> $2 AND requested_at > $4`,
		id, by, at, true, e)
}

// EndAuthzOverride ends a pending or active override with a conditional
// update (primary key); see store.AuthzStore.
func (o *Ops) EndAuthzOverride(ctx context.Context, id, by string, at time.Time, e store.AuditEntry) (store.AuthzOverride, store.AuditEntry, error) {
	return o.changeOverride(ctx, "end", `
		UPDATE authz_overrides SET ended_by = $2, ended_at = $3
		WHERE id = $1 AND ended_at IS NULL
		  AND ((approved_at IS NULL AND requested_at > $4) OR until > $3)`,
		id, by, at, false, e)
}

// GetAuthzOverride returns one override (primary key).
func (o *Ops) GetAuthzOverride(ctx context.Context, id string) (store.AuthzOverride, error) {
	ov, err := scanOverride(o.r.QueryRow(ctx, `SELECT `+overrideColumns+` FROM authz_overrides WHERE id = $1`, id))
	if o.d.IsNoRows(err) {
		return store.AuthzOverride{}, o.errorf("override %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.AuthzOverride{}, o.errorf("override %s: %w", id, o.d.MapErr(err))
	}
	return ov, nil
}

// ActiveAuthzOverrides lists the overrides active at now (index
// authz_overrides_service_idx).
func (o *Ops) ActiveAuthzOverrides(ctx context.Context, service string, now time.Time) ([]store.AuthzOverride, error) {
	list, err := queryAll(ctx, o, o.r, scanOverride, `
		SELECT `+overrideColumns+` FROM authz_overrides
		WHERE approved_at IS NOT NULL AND ended_at IS NULL AND until > $2 AND ($1 = '' OR service = $1)
		ORDER BY until, id LIMIT 10000`, service, o.time(now))
	if err != nil {
		return nil, o.errorf("active overrides: %w", err)
	}
	return list, nil
}

// ListAuthzOverrides lists overrides, newest first (index
// authz_overrides_requested_idx).
func (o *Ops) ListAuthzOverrides(ctx context.Context, limit int) ([]store.AuthzOverride, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	list, err := queryAll(ctx, o, o.r, scanOverride, `
		SELECT `+overrideColumns+` FROM authz_overrides
		ORDER BY requested_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, o.errorf("list overrides: %w", err)
	}
	return list, nil
}

// AddAuthzReportCounts upserts the aggregates in one transaction (primary
// key of authz_report_counts as the conflict target; Postgres pipelines the
// statements).
func (o *Ops) AddAuthzReportCounts(ctx context.Context, rows []store.AuthzReportCount, e store.AuditEntry) (store.AuditEntry, error) {
	for _, r := range rows {
		if !store.ValidAuthzReportCount(r) {
			return store.AuditEntry{}, o.errorf("add report counts: want service, minute, decision, reason and a count >= 0: %w", store.ErrInvalidQuery)
		}
	}
	var entry store.AuditEntry
	err := o.w.InTx(ctx, func(tx Tx) error {
		stmts := make([]Stmt, 0, len(rows))
		for _, r := range rows {
			stmts = append(stmts, Stmt{Query: `
				INSERT INTO authz_report_counts (service, minute, source, endpoint, decision, reason, count)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (service, minute, source, endpoint, decision, reason)
				DO UPDATE SET count = authz_report_counts.count + excluded.count`,
				Args: []any{r.Service, o.time(r.Minute.UTC().Truncate(time.Minute)), r.Source, r.Endpoint, r.Decision, r.Reason, r.Count}})
		}
		if err := tx.Batch(ctx, stmts); err != nil {
			return o.errorf("add report counts: %w", o.d.MapErr(err))
		}
		var err error
		entry, err = tx.AppendAudit(ctx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return entry, nil
}

// ListAuthzReportCounts lists one service's aggregates in a minute range
// (primary key of authz_report_counts: service, minute lead).
func (o *Ops) ListAuthzReportCounts(ctx context.Context, service string, from, to time.Time, limit int) ([]store.AuthzReportCount, error) {
	if from.IsZero() || to.IsZero() {
		return nil, o.errorf("list report counts: want a time range: %w", store.ErrInvalidQuery)
	}
	if limit <= 0 {
		limit = 10000
	}
	list, err := queryAll(ctx, o, o.r, func(r Row) (store.AuthzReportCount, error) {
		var c store.AuthzReportCount
		var minute NullTime
		if err := r.Scan(&c.Service, &minute, &c.Source, &c.Endpoint, &c.Decision, &c.Reason, &c.Count); err != nil {
			return store.AuthzReportCount{}, err
		}
		c.Minute = minute.Time
		return c, nil
	}, `
		SELECT service, minute, source, endpoint, decision, reason, count FROM authz_report_counts
		WHERE service = $1 AND minute >= $2 AND minute < $3
		ORDER BY minute, source, endpoint, decision, reason LIMIT $4`, service, o.time(from), o.time(to), limit)
	if err != nil {
		return nil, o.errorf("list report counts: %w", err)
	}
	return list, nil
}
