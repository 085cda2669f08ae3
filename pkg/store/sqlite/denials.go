package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Denials groups the denied decisions since q.Since by action, actor and
// reason, most recent group first, through the partial index
// audit_log_denials_idx (migration 000005). The details of each group's last
// entry come from the same row as its max(seq) (SQLite's bare-column rule).
func (s *Store) Denials(ctx context.Context, q store.DenialQuery) ([]store.DenialGroup, error) {
	args := []any{q.Since.UnixMicro()}
	sql := `SELECT action, actor, reason, count(*), min(time), max(time), max(seq), target, request_id, details
		FROM audit_log WHERE decision = 'deny' AND time >= ?`
	if len(q.Actions) > 0 {
		sql += ` AND action IN (?` + strings.Repeat(", ?", len(q.Actions)-1) + `)`
		for _, a := range q.Actions {
			args = append(args, a)
		}
	}
	sql += ` GROUP BY action, actor, reason ORDER BY max(seq) DESC LIMIT ?`
	args = append(args, q.EffectiveLimit())
	rows, err := s.r.QueryContext(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: denials: %w", mapErr(err))
	}
	groups, err := collectRows(rows, func(row scanner) (store.DenialGroup, error) {
		var g store.DenialGroup
		var first, last int64
		var details []byte
		if err := row.Scan(&g.Action, &g.Actor, &g.Reason, &g.Count, &first, &last, &g.LastSeq,
			&g.LastTarget, &g.LastRequestID, &details); err != nil {
			return store.DenialGroup{}, err
		}
		g.First, g.Last, g.LastDetails = time.UnixMicro(first).UTC(), time.UnixMicro(last).UTC(), details
		return g, nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: denials: %w", mapErr(err))
	}
	return groups, nil
}
