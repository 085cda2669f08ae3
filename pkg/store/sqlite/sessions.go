package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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
	_, err := s.w.ExecContext(ctx, `
		INSERT INTO dashboard_sessions (id_hash, actor, token_issuer, claims, dev, created_at, expires_at, idle_expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, min(?, ?))`,
		ds.IDHash, ds.Actor, ds.TokenIssuer, claims, ds.Dev, us(ds.CreatedAt), us(ds.ExpiresAt), us(ds.IdleExpiresAt), us(ds.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sqlite: create dashboard session: %w", mapErr(err))
	}
	return nil
}

// GetSession returns the session valid at now (primary key lookup).
func (s *Store) GetSession(ctx context.Context, idHash string, now time.Time) (store.DashboardSession, error) {
	var ds store.DashboardSession
	var claims string
	var created, expires, idle sql.NullInt64
	err := s.r.QueryRowContext(ctx, `
		SELECT id_hash, actor, token_issuer, claims, dev, created_at, expires_at, idle_expires_at
		FROM dashboard_sessions
		WHERE id_hash = ? AND expires_at > ? AND idle_expires_at > ?`,
		idHash, now.UnixMicro(), now.UnixMicro()).Scan(&ds.IDHash, &ds.Actor, &ds.TokenIssuer, &claims, &ds.Dev, &created, &expires, &idle)
	if errors.Is(err, sql.ErrNoRows) {
		return store.DashboardSession{}, fmt.Errorf("sqlite: dashboard session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.DashboardSession{}, fmt.Errorf("sqlite: get dashboard session: %w", mapErr(err))
	}
	ds.Claims = []byte(claims)
	ds.CreatedAt, ds.ExpiresAt, ds.IdleExpiresAt = fromUS(created), fromUS(expires), fromUS(idle)
	return ds, nil
}

// TouchSession extends the idle end of a session valid at now, as one
// conditional update (primary key).
func (s *Store) TouchSession(ctx context.Context, idHash string, now, idleUntil time.Time) error {
	res, err := s.w.ExecContext(ctx, `
		UPDATE dashboard_sessions
		SET idle_expires_at = max(idle_expires_at, min(?, expires_at))
		WHERE id_hash = ? AND expires_at > ? AND idle_expires_at > ?`,
		idleUntil.UnixMicro(), idHash, now.UnixMicro(), now.UnixMicro())
	if err != nil {
		return fmt.Errorf("sqlite: touch dashboard session: %w", mapErr(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: dashboard session: %w", store.ErrNotFound)
	}
	return nil
}

// DeleteSession ends a session (primary key).
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE id_hash = ?`, idHash)
	if err != nil {
		return fmt.Errorf("sqlite: delete dashboard session: %w", mapErr(err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("sqlite: dashboard session: %w", store.ErrNotFound)
	}
	return nil
}

// PruneSessions deletes expired sessions (index dashboard_sessions_idle_idx:
// idle_expires_at is never after expires_at, so it alone says expired).
func (s *Store) PruneSessions(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE idle_expires_at <= ?`, now.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune dashboard sessions: %w", mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune dashboard sessions: %w", mapErr(err))
	}
	return n, nil
}
