package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Group commit of issuances. The audit chain is linear, so every issuance
// transaction takes the audit advisory lock and holds it through its commit
// (one WAL flush): one issuance per flush caps a database at a few hundred
// issuances per second whatever the CPU. RecordIssuance calls that arrive
// while a commit is in flight are therefore queued and committed together by
// one committer goroutine per Store: one transaction, one lock, the audit
// entries chained in order, one commit. Invariants:
//   - a caller gets its result only after the transaction holding its row
//     committed (or failed), never before;
//   - a serial that is already taken (in the database, or earlier in the same
//     group) fails only its own caller, with store.ErrConflict;
//   - a group that fails for a database reason (connection lost, server gone)
//     fails every caller in it, and nothing of it is committed; if the commit
//     itself fails, the outcome is unknown and every caller gets the error;
//   - a group that fails on one caller's statement (a missing issuer, say)
//     before its commit is retried one issuance per transaction, so each
//     caller gets its own answer.

// maxGroup bounds how many issuances one group transaction carries.
const maxGroup = 128

// groupTimeout bounds one group transaction. It does not come from any one
// caller: a caller that gives up must not abort the others' commit.
const groupTimeout = 30 * time.Second

// rollbackTimeout bounds the ROLLBACK of a group that failed before its
// commit; a connection that does not answer in time is closed, which rolls
// back as well.
const rollbackTimeout = 5 * time.Second

// issuance is one queued RecordIssuance call.
type issuance struct {
	ctx  context.Context
	c    store.Certificate
	e    store.AuditEntry
	done chan issuanceResult // buffered: the committer never blocks on it
}

type issuanceResult struct {
	e   store.AuditEntry
	err error
}

// groupCommitter writes the queued issuances, a group at a time.
type groupCommitter struct {
	s *Store
	q *grouper[*issuance]
}

func newGroupCommitter(s *Store) *groupCommitter {
	g := &groupCommitter{s: s}
	g.q = newGrouper(func(group []*issuance) { g.commit(group, nil) })
	return g
}

// stop ends the committer after its current group; later calls fail with
// store.ErrUnavailable.
func (g *groupCommitter) stop() { g.q.stop() }

// record queues one issuance and waits for its group's outcome. If ctx ends
// while the group is in flight, the row may still be committed (a record
// without a returned certificate, never the reverse).
func (g *groupCommitter) record(ctx context.Context, c store.Certificate, e store.AuditEntry) (store.AuditEntry, error) {
	req := &issuance{ctx: ctx, c: c, e: e, done: make(chan issuanceResult, 1)}
	r, err := await(ctx, g.q, req, req.done, "record certificate "+c.Serial)
	if err != nil {
		return store.AuditEntry{}, err
	}
	return r.e, r.err
}

// commit records one group and hands every caller its result. beforeCommit,
// if not nil (tests only: CommitGroupForTest), runs inside the group
// transaction just before its commit.
func (g *groupCommitter) commit(group []*issuance, beforeCommit func(ctx context.Context, conn *pgx.Conn, size int)) {
	live := group[:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.done <- issuanceResult{err: fmt.Errorf("postgres: record certificate %s: %w", r.c.Serial, err)}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	results, err := g.s.recordGroup(ctx, live, beforeCommit)
	var stmtErr *beforeCommitError
	switch {
	case err == nil:
		for i, r := range live {
			r.done <- results[i]
		}
	case errors.As(err, &stmtErr) && !errors.Is(err, store.ErrUnavailable):
		// One statement failed before the commit, so nothing was committed;
		// give each caller its own answer.
		for _, r := range live {
			e, err := g.s.recordOne(ctx, r.c, r.e)
			r.done <- issuanceResult{e: e, err: err}
		}
	default:
		for _, r := range live {
			r.done <- issuanceResult{err: fmt.Errorf("postgres: record certificate %s (group of %d): %w", r.c.Serial, len(live), err)}
		}
	}
}

// beforeCommitError marks a group failure that happened before its commit:
// the transaction was rolled back and nothing of the group was recorded.
type beforeCommitError struct{ err error }

func (e *beforeCommitError) Error() string { return e.err.Error() }
func (e *beforeCommitError) Unwrap() error { return e.err }

const insertCertificateSQL = `
	INSERT INTO certificates (serial, issuer_id, spiffe_id, dns_names, not_before, not_after,
		der, public_key_sha256, status, revoked_at, revocation_reason, provenance,
		policy_rule, policy_version, renewed_from, created_at,
		lineage, repository, token_issuer, subject, lineage_started_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULLIF($11, ''), $12::json,
		$13, $14, NULLIF($15, ''), $16, $17, $18, $19, $20, $21)`

// insertLineageSQL records an enrollment's provenance as its lineage's
// (lineages, migration 14); certLineageArgs says whether c needs it.
const insertLineageSQL = `
	INSERT INTO lineages (lineage, started_at, provenance) VALUES ($1, $2, $3::json)
	ON CONFLICT (lineage) DO NOTHING`

// certLineageArgs are the insertLineageSQL arguments of c, or nil when c
// starts no lineage row (a renewal, or no provenance).
func certLineageArgs(c store.Certificate) []any {
	if c.RenewedFrom != "" || len(c.Provenance) == 0 {
		return nil
	}
	return []any{c.Serial, ts(c.CreatedAt), string(c.Provenance)}
}

const insertAuditSQL = `
	INSERT INTO audit_log (seq, time, actor, action, target, decision, reason,
		policy_version, request_id, details, prev_hash, hash)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`

// certArgs are the insertCertificateSQL arguments of c. An enrollment
// (no RenewedFrom) starts its own lineage; a renewal's lineage fields are
// the predecessor's, filled in by recordRenewal.
func certArgs(c store.Certificate) []any {
	if c.RenewedFrom == "" {
		c.Lineage, c.LineageStartedAt = c.Serial, c.CreatedAt
	}
	if c.Status == "" {
		c.Status = store.CertActive
	}
	dns := c.DNSNames
	if dns == nil {
		dns = []string{}
	}
	var provenance any
	if len(c.Provenance) > 0 {
		provenance = string(c.Provenance)
	}
	return []any{c.Serial, c.IssuerID, c.SPIFFEID, dns, ts(c.NotBefore), ts(c.NotAfter),
		c.DER, c.PublicKeySHA256, c.Status, ts(c.RevokedAt), c.RevocationReason, provenance,
		c.PolicyRule, c.PolicyVersion, c.RenewedFrom, ts(c.CreatedAt),
		c.Lineage, c.Repository, c.TokenIssuer, c.Subject, ts(c.LineageStartedAt)}
}

// recordGroup inserts the group's certificates (a serial already taken, or
// taken earlier in the group, is that caller's ErrConflict), then takes the
// audit lock, chains the audit entries of the inserted ones in group order,
// and commits once. Statement failures come back as *beforeCommitError.
func (s *Store) recordGroup(ctx context.Context, group []*issuance, hook func(context.Context, *pgx.Conn, int)) (results []issuanceResult, err error) {
	// Two round trips on one connection: BEGIN, the inserts, the audit lock
	// and the audit head in one pipeline; the chained audit entries and
	// COMMIT in a second. (pgx.Tx would add one for BEGIN, one for the
	// lock, one for the head and one for COMMIT, each a wake-up of both
	// processes, on the path of every issuance.)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, &beforeCommitError{fmt.Errorf("postgres: acquire: %w", mapErr(err))}
	}
	committing := false
	defer func() {
		// Unless COMMIT was sent, roll back. Release drops a connection
		// that is still inside a transaction (a failed ROLLBACK included).
		if !committing && conn.Conn().PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		conn.Release()
	}()

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	for _, r := range group {
		b.Queue(insertCertificateSQL+` ON CONFLICT (serial) DO NOTHING RETURNING serial`, certArgs(r.c)...)
		if la := certLineageArgs(r.c); la != nil {
			b.Queue(insertLineageSQL, la...)
		}
	}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, AuditLockKey)
	b.Queue(`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`)
	results = make([]issuanceResult, len(group))
	var seq int64
	var prev []byte
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("postgres: begin: %w", mapErr(err))
		}
		for i, r := range group {
			var got string
			err := br.QueryRow().Scan(&got)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				results[i].err = fmt.Errorf("postgres: record certificate %s: serial taken: %w", r.c.Serial, store.ErrConflict)
			case err != nil:
				return fmt.Errorf("postgres: record certificate %s: %w", r.c.Serial, mapErr(err))
			}
			if certLineageArgs(r.c) != nil {
				if _, err := br.Exec(); err != nil {
					return fmt.Errorf("postgres: record lineage %s: %w", r.c.Serial, mapErr(err))
				}
			}
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("postgres: lock audit log: %w", mapErr(err))
		}
		err := br.QueryRow().Scan(&seq, &prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: read audit head: %w", mapErr(err))
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("postgres: record certificates: %w", mapErr(err))
		}
		return nil
	}()
	if err != nil {
		return nil, &beforeCommitError{err}
	}

	ab := &pgx.Batch{}
	for i, r := range group {
		if results[i].err != nil {
			continue
		}
		e := r.e
		seq++
		e.Seq = seq
		e.Time = e.Time.UTC().Truncate(time.Microsecond)
		e.PrevHash = prev
		e.Hash = store.AuditHash(prev, e)
		prev = e.Hash
		ab.Queue(insertAuditSQL, e.Seq, e.Time, e.Actor, e.Action, e.Target, e.Decision, e.Reason,
			e.PolicyVersion, e.RequestID, []byte(e.Details), e.PrevHash, e.Hash)
		results[i].e = e
	}
	if hook != nil {
		hook(ctx, conn.Conn(), len(group))
	}
	audits := ab.Len()
	ab.Queue("COMMIT")
	committing = true
	br := conn.SendBatch(ctx, ab)
	for range audits {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				// The server refused the statement, so it skipped the
				// COMMIT behind it: the transaction is rolled back below.
				committing = false
				return nil, &beforeCommitError{fmt.Errorf("postgres: append audit entries: %w", mapErr(err))}
			}
			// The connection failed with COMMIT already sent: the outcome
			// is unknown.
			return nil, fmt.Errorf("postgres: append audit entries and commit: %w", mapErr(err))
		}
	}
	_, err = br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: commit: %w", mapErr(err))
	}
	return results, nil
}

// recordOne records one issuance in its own transaction: the path a group
// falls back to when one of its statements failed.
func (s *Store) recordOne(ctx context.Context, c store.Certificate, e store.AuditEntry) (store.AuditEntry, error) {
	var out store.AuditEntry
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, insertCertificateSQL, certArgs(c)...)
		if isForeignKeyViolation(err) {
			return fmt.Errorf("postgres: record certificate %s: issuer %q: %w", c.Serial, c.IssuerID, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: record certificate %s: %w", c.Serial, mapErr(err))
		}
		if la := certLineageArgs(c); la != nil {
			if _, err := tx.Exec(ctx, insertLineageSQL, la...); err != nil {
				return fmt.Errorf("postgres: record lineage %s: %w", c.Serial, mapErr(err))
			}
		}
		out, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return store.AuditEntry{}, err
	}
	return out, nil
}
