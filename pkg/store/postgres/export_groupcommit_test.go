package postgres

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// GroupResult is one caller's answer from CommitGroupForTest.
type GroupResult struct {
	Entry store.AuditEntry
	Err   error
}

// CommitGroupForTest commits certs (with entries) as exactly one group, as
// the committer would, running hook inside the group transaction just
// before its commit. It exists only in test builds, so that tests can form a
// group deterministically.
func (s *Store) CommitGroupForTest(ctx context.Context, certs []store.Certificate, entries []store.AuditEntry,
	hook func(ctx context.Context, conn *pgx.Conn, size int)) []GroupResult {
	g := &groupCommitter{s: s}
	group := make([]*issuance, len(certs))
	for i := range certs {
		group[i] = &issuance{ctx: ctx, c: certs[i], e: entries[i], done: make(chan issuanceResult, 1)}
	}
	g.commit(group, hook)
	out := make([]GroupResult, len(group))
	for i, r := range group {
		res := <-r.done
		out[i] = GroupResult{Entry: res.e, Err: res.err}
	}
	return out
}

// MarkGroupForTest writes keys (each marked until expiresAt, at now) as
// exactly one mark group, as the grouper would, and returns each caller's
// answer in the order of keys.
func (s *Store) MarkGroupForTest(ctx context.Context, keys []string, expiresAt, now time.Time) []error {
	group := make([]*markReq, len(keys))
	for i, k := range keys {
		group[i] = &markReq{ctx: ctx, key: k, expiresAt: expiresAt, now: now, done: make(chan error, 1)}
	}
	s.writeMarks(slices.Clone(group))
	errs := make([]error, len(group))
	for i, r := range group {
		errs[i] = <-r.done
	}
	return errs
}
