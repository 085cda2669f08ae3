package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

var _ store.SessionStore = (*Store)(nil)

// CreateSession records a dashboard session; a taken ID hash is
// store.ErrConflict (the primary key).
func (s *Store) CreateSession(ctx context.Context, ds store.DashboardSession) error {
	claims := string(ds.Claims)
	if claims == "" {
		claims = "{}"
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO dashboard_sessions (id_hash, actor, token_issuer, claims, dev, created_at, expires_at, idle_expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, LEAST($8::timestamptz, $7::timestamptz))`,
		ds.IDHash, ds.Actor, ds.TokenIssuer, claims, ds.Dev, ts(ds.CreatedAt), ts(ds.ExpiresAt), ts(ds.IdleExpiresAt))
	if err != nil {
		return fmt.Errorf("postgres: create dashboard session: %w", mapErr(err))
	}
	return nil
}

// GetSession returns the session valid at now (primary key lookup).
func (s *Store) GetSession(ctx context.Context, idHash string, now time.Time) (store.DashboardSession, error) {
	var ds store.DashboardSession
	var claims string
	var created, expires, idle *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT id_hash, actor, token_issuer, claims, dev, created_at, expires_at, idle_expires_at
		FROM dashboard_sessions
		WHERE id_hash = $1 AND expires_at > $2 AND idle_expires_at > $2`,
		idHash, ts(now)).Scan(&ds.IDHash, &ds.Actor, &ds.TokenIssuer, &claims, &ds.Dev, &created, &expires, &idle)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.DashboardSession{}, fmt.Errorf("postgres: dashboard session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.DashboardSession{}, fmt.Errorf("postgres: get dashboard session: %w", mapErr(err))
	}
	ds.Claims = []byte(claims)
	ds.CreatedAt, ds.ExpiresAt, ds.IdleExpiresAt = fromTS(created), fromTS(expires), fromTS(idle)
	return ds, nil
}

// TouchSession extends the idle end of a session valid at now, as one
// conditional update (primary key).
func (s *Store) TouchSession(ctx context.Context, idHash string, now, idleUntil time.Time) error {
	tag, err := s.pool.Exec(ctx, `
		UPDATE dashboard_sessions
		SET idle_expires_at = GREATEST(idle_expires_at, LEAST($3::timestamptz, expires_at))
		WHERE id_hash = $1 AND expires_at > $2 AND idle_expires_at > $2`,
		idHash, ts(now), ts(idleUntil))
	if err != nil {
		return fmt.Errorf("postgres: touch dashboard session: %w", mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: dashboard session: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteSession ends a session (primary key).
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE id_hash = $1`, idHash)
	if err != nil {
		return fmt.Errorf("postgres: delete dashboard session: %w", mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: dashboard session: %w", store.ErrNotFound)
	}
	return nil
}

// PruneSessions deletes expired sessions (index dashboard_sessions_idle_idx:
// idle_expires_at is never after expires_at, so it alone says expired).
func (s *Store) PruneSessions(ctx context.Context, now time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM dashboard_sessions WHERE idle_expires_at <= $1`, ts(now))
	if err != nil {
		return 0, fmt.Errorf("postgres: prune dashboard sessions: %w", mapErr(err))
	}
	return tag.RowsAffected(), nil
}
