package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Denials groups the denied decisions since q.Since by action, actor and
// reason, most recent group first. It reads only denials, through the
// partial index audit_log_denials_idx (migration 000005).
func (s *Store) Denials(ctx context.Context, q store.DenialQuery) ([]store.DenialGroup, error) {
	args := []any{ts(q.Since)}
	sql := `SELECT action, actor, reason, count(*), min(time), max(time), max(seq)
		FROM audit_log WHERE decision = 'deny' AND time >= $1`
	if len(q.Actions) > 0 {
		args = append(args, q.Actions)
		sql += ` AND action = ANY($2)`
	}
	args = append(args, q.EffectiveLimit())
	sql += ` GROUP BY action, actor, reason ORDER BY max(seq) DESC LIMIT $` + strconv.Itoa(len(args))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: denials: %w", mapErr(err))
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.DenialGroup, error) {
		var g store.DenialGroup
		err := r.Scan(&g.Action, &g.Actor, &g.Reason, &g.Count, &g.First, &g.Last, &g.LastSeq)
		g.First, g.Last = g.First.UTC(), g.Last.UTC()
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: denials: %w", mapErr(err))
	}
	if len(groups) == 0 {
		return nil, nil
	}
	seqs := make([]int64, len(groups))
	bySeq := make(map[int64]*store.DenialGroup, len(groups))
	for i := range groups {
		seqs[i] = groups[i].LastSeq
		bySeq[groups[i].LastSeq] = &groups[i]
	}
	rows, err = s.pool.Query(ctx, `SELECT seq, target, request_id, details FROM audit_log WHERE seq = ANY($1)`, seqs)
	if err != nil {
		return nil, fmt.Errorf("postgres: denials: %w", mapErr(err))
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var target, reqID string
		var details []byte
		if err := rows.Scan(&seq, &target, &reqID, &details); err != nil {
			return nil, fmt.Errorf("postgres: denials: %w", mapErr(err))
		}
		if g := bySeq[seq]; g != nil {
			g.LastTarget, g.LastRequestID, g.LastDetails = target, reqID, details
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: denials: %w", mapErr(err))
	}
	return groups, nil
}
