package sqlstore

import (
	"context"
	"strconv"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Denials groups the denied decisions since q.Since by action, actor and
// reason, most recent group first. The groups read only denials, through the
// partial index audit_log_denials_idx (migration 000005); each group's last
// entry is then joined by its seq (primary key), in the same query.
func (o *Ops) Denials(ctx context.Context, q store.DenialQuery) ([]store.DenialGroup, error) {
	args := []any{o.time(q.Since)}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	filter := ""
	if len(q.Actions) > 0 {
		params := make([]string, len(q.Actions))
		for i, a := range q.Actions {
			params[i] = arg(a)
		}
		filter = ` AND action IN (` + strings.Join(params, ", ") + `)`
	}
	sql := `SELECT g.action, g.actor, g.reason, g.n, g.first, g.last, g.seq, a.target, a.request_id, a.details
		FROM (SELECT action, actor, reason, count(*) AS n, min(time) AS first, max(time) AS last, max(seq) AS seq
			FROM audit_log WHERE decision = 'deny' AND time >= $1` + filter + `
			GROUP BY action, actor, reason ORDER BY max(seq) DESC LIMIT ` + arg(q.EffectiveLimit()) + `) g
		JOIN audit_log a ON a.seq = g.seq
		ORDER BY g.seq DESC`
	groups, err := queryAll(ctx, o, o.r, func(row Row) (store.DenialGroup, error) {
		var g store.DenialGroup
		var first, last NullTime
		if err := row.Scan(&g.Action, &g.Actor, &g.Reason, &g.Count, &first, &last, &g.LastSeq,
			&g.LastTarget, &g.LastRequestID, &g.LastDetails); err != nil {
			return store.DenialGroup{}, err
		}
		g.First, g.Last = first.Time, last.Time
		return g, nil
	}, sql, args...)
	if err != nil {
		return nil, o.errorf("denials: %w", err)
	}
	return groups, nil
}
