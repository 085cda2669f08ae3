package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Grouped replay marks. Every enrollment marks its token before anything is
// signed, and each mark used to be a transaction of its own: a statement, a
// commit record and a WAL flush per enrollment, and a round trip that wakes
// both processes. Marks that arrive while a group is being written now wait
// for the next group, which writes them all in one statement (one
// transaction, one flush), like the issuance group commit. Invariants:
//   - a caller is answered only after the statement holding its mark
//     committed (nil) or failed (its error), never before: the mark stays
//     synchronous and durable, which issue 20 showed it must be
//     (TestMarkTokenUsedIsFlushedBeforeItReturns);
//   - of the callers with one key, in one group or in concurrent ones
//     (another replica's), exactly one gets nil and the others
//     store.ErrConflict;
//   - a failed statement fails every caller of its group and leaves none of
//     its marks (one statement is atomic); an unknown outcome (the
//     connection lost after the statement was sent) fails them too: at
//     worst a mark without an enrollment, which refuses a retry of that
//     token, never an enrollment without a mark;
//   - a group is written under the latest deadline of its callers (at most
//     groupTimeout): once every caller has given up, nobody waits for it.

// markReq is one queued MarkTokenUsed call.
type markReq struct {
	ctx       context.Context
	key       string
	expiresAt time.Time
	now       time.Time
	done      chan error // buffered: the writer never blocks on it
}

// markGroupSQL writes a group's marks: $1 the keys (sorted, distinct), $2
// their expiries. A key already marked is replaced only if its mark expired
// at $3, the earliest now of the group's callers (expired then, it is
// expired for each of them). RETURNING names the keys this statement
// marked; the others are taken.
const markGroupSQL = `
	INSERT INTO used_tokens (key, expires_at)
	SELECT k, e FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS t(k, e, n) ORDER BY n
	ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
	WHERE used_tokens.expires_at <= $3
	RETURNING key`

// writeMarks writes one group and answers each of its callers.
func (s *Store) writeMarks(group []*markReq) {
	live := make([]*markReq, 0, len(group))
	for _, r := range group {
		if r.ctx.Err() != nil {
			r.done <- gaveUp(r.ctx, "mark token used")
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// Keys in one order in every statement: two replicas' groups that share
	// keys wait on each other in that order, never in a cycle (a deadlock
	// would fail both groups).
	slices.SortStableFunc(live, func(a, b *markReq) int { return strings.Compare(a.key, b.key) })
	keys := make([]string, 0, len(live))
	expires := make([]time.Time, 0, len(live))
	owners := make([]*markReq, 0, len(live))
	now := live[0].now
	deadline, bounded := time.Time{}, true
	for i, r := range live {
		if i > 0 && r.key == live[i-1].key {
			// One token twice in a group: the first caller may mark it.
			r.done <- fmt.Errorf("postgres: token already used: %w", store.ErrConflict)
			continue
		}
		keys = append(keys, r.key)
		expires = append(expires, r.expiresAt.UTC().Truncate(time.Microsecond))
		owners = append(owners, r)
		if r.now.Before(now) {
			now = r.now
		}
		if d, ok := r.ctx.Deadline(); !ok {
			bounded = false
		} else if d.After(deadline) {
			deadline = d
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	if bounded {
		var cancelAt context.CancelFunc
		ctx, cancelAt = context.WithDeadline(ctx, deadline)
		defer cancelAt()
	}
	marked, err := s.execMarks(ctx, keys, expires, now)
	if isDeadlock(err) {
		// Groups write keys in one order, but PruneUsedTokens deletes
		// expired marks in its own: a group replacing two expired
		// leftovers while a prune runs can meet it in a cycle, and the
		// database cancels one side. Nothing of the group was written;
		// write it once more.
		marked, err = s.execMarks(ctx, keys, expires, now)
	}
	for i, r := range owners {
		switch {
		case err != nil:
			r.done <- fmt.Errorf("postgres: mark token used (group of %d): %w", len(keys), mapErr(err))
		case marked[keys[i]]:
			r.done <- nil
		default:
			r.done <- fmt.Errorf("postgres: token already used: %w", store.ErrConflict)
		}
	}
}

// execMarks runs markGroupSQL: the set of keys it marked. Its errors are
// pgx's (isDeadlock reads them); the caller maps them.
func (s *Store) execMarks(ctx context.Context, keys []string, expires []time.Time, now time.Time) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, markGroupSQL, keys, expires, ts(now))
	if err != nil {
		return nil, err
	}
	marked := make(map[string]bool, len(keys))
	var key string
	if _, err := pgx.ForEachRow(rows, []any{&key}, func() error {
		marked[key] = true
		return nil
	}); err != nil {
		return nil, err
	}
	return marked, nil
}

// isDeadlock reports the database's deadlock_detected (40P01).
func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == deadlockDetected
}
