package sqlstore

import (
	"context"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

var _ store.SessionStore = (*Ops)(nil)

// CreateSession records a dashboard session; a taken ID hash is
// store.ErrConflict (the primary key). The idle end is capped at the
// absolute end here; a zero one stays NULL, which the table refuses.
func (o *Ops) CreateSession(ctx context.Context, ds store.DashboardSession) error {
	claims := string(ds.Claims)
	if claims == "" {
		claims = "{}"
	}
	idle := ds.IdleExpiresAt
	if idle.After(ds.ExpiresAt) {
		idle = ds.ExpiresAt
	}
	_, err := o.w.Exec(ctx, `
		INSERT INTO dashboard_sessions (id_hash, actor, token_issuer, claims, dev, created_at, expires_at, idle_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		ds.IDHash, ds.Actor, ds.TokenIssuer, claims, ds.Dev, o.time(ds.CreatedAt), o.time(ds.ExpiresAt), o.time(idle))
	if err != nil {
		return o.errorf("create dashboard session: %w", o.d.MapErr(err))
	}
	return nil
}

// GetSession returns the session valid at now (primary key lookup).
func (o *Ops) GetSession(ctx context.Context, idHash string, now time.Time) (store.DashboardSession, error) {
	var ds store.DashboardSession
	var claims string
	var created, expires, idle NullTime
	err := o.r.QueryRow(ctx, `
		SELECT id_hash, actor, token_issuer, claims, dev, created_at, expires_at, idle_expires_at
		FROM dashboard_sessions
		WHERE id_hash = $1 AND expires_at > $2 AND idle_expires_at > $2`,
		idHash, o.time(now)).Scan(&ds.IDHash, &ds.Actor, &ds.TokenIssuer, &claims, &ds.Dev, &created, &expires, &idle)
	if o.d.IsNoRows(err) {
		return store.DashboardSession{}, o.errorf("dashboard session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.DashboardSession{}, o.errorf("get dashboard session: %w", o.d.MapErr(err))
	}
	ds.Claims = []byte(claims)
	ds.CreatedAt, ds.ExpiresAt, ds.IdleExpiresAt = created.Time, expires.Time, idle.Time
	return ds, nil
}

// TouchSession extends the idle end of a session valid at now, as one
// conditional update (primary key). A zero idleUntil is earlier than any
// idle end, so it changes none (both engines' min and max then see no NULL).
func (o *Ops) TouchSession(ctx context.Context, idHash string, now, idleUntil time.Time) error {
	if idleUntil.IsZero() {
		idleUntil = now
	}
	n, err := o.w.Exec(ctx, `
		UPDATE dashboard_sessions
		SET idle_expires_at = `+o.d.Greatest+`(idle_expires_at, `+o.d.Least+`($3, expires_at))
		WHERE id_hash = $1 AND expires_at > $2 AND idle_expires_at > $2`,
		idHash, o.time(now), o.time(idleUntil))
	if err != nil {
		return o.errorf("touch dashboard session: %w", o.d.MapErr(err))
	}
	if n == 0 {
		return o.errorf("dashboard session: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteSession ends a session (primary key).
func (o *Ops) DeleteSession(ctx context.Context, idHash string) error {
	n, err := o.w.Exec(ctx, `DELETE FROM dashboard_sessions WHERE id_hash = $1`, idHash)
	if err != nil {
		return o.errorf("delete dashboard session: %w", o.d.MapErr(err))
	}
	if n == 0 {
		return o.errorf("dashboard session: %w", store.ErrNotFound)
	}
	return nil
}

// PruneSessions deletes expired sessions (index dashboard_sessions_idle_idx:
// idle_expires_at is never after expires_at, so it alone says expired).
func (o *Ops) PruneSessions(ctx context.Context, now time.Time) (int64, error) {
	n, err := o.w.Exec(ctx, `DELETE FROM dashboard_sessions WHERE idle_expires_at <= $1`, o.time(now))
	if err != nil {
		return 0, o.errorf("prune dashboard sessions: %w", o.d.MapErr(err))
	}
	return n, nil
}
