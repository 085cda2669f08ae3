package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Group commit. SQLite has one writer and, in WAL with synchronous=FULL,
// one WAL sync per commit: a transaction per issuance and another per token
// replay mark cap the embedded default at a few hundred enrollments per
// second, whatever the CPU. So the writes on the enrollment path
// (RecordIssuance, AppendAudit, the token marks) are queued, and one committer
// goroutine runs whatever is queued as one transaction, each write in its
// own savepoint, with one commit and one sync for all. Invariants, as for
// the Postgres group commit:
//   - a caller gets its result only after the transaction holding its write
//     committed (or failed), never before; synchronous=FULL makes that commit
//     durable, so a certificate answered to a client is on disk. A token
//     replay mark is answered before (below), and is durable no later
//     than any certificate it let through;
//   - a write that fails (a serial taken, a token already used, a missing
//     issuer) is rolled back to its savepoint and fails only its caller;
//   - a group whose transaction fails (the disk, the file) fails every caller
//     whose write was in it, and nothing of it is committed;
//   - the audit entries of a group are chained in the order of the group;
//   - nothing is held across signing: a caller queues a finished certificate.
// The OCSP pre-signer's batches of responses (ExecAll) are writes of the
// group too. Other writes (revocations, retention, administration) keep
// their own transactions on the same single write connection.
//
// A token replay mark (MarkTokenUsed) does not wait for the committer at
// all (issue 20: an enrollment waited for it twice, its mark's turn behind
// the group being committed, then its certificate's group; with the marks
// taken off it, an upper bound of 12-17% more enrollments/s at 16 clients).
// It is decided in memory and by a read, and written first by the next
// group: see marks.go.

// The savepoint of each write in a group.
const (
	savepointSQL  = `SAVEPOINT w`
	rollbackToSQL = `ROLLBACK TO w`
	releaseSQL    = `RELEASE w`
)

// maxGroup bounds how many writes one group transaction carries.
const maxGroup = 128

// groupTimeout bounds one group transaction. It does not come from any one
// caller: a caller that gives up must not abort the others' commit.
const groupTimeout = 30 * time.Second

// write is one queued write.
type write struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan error // buffered: the committer never blocks on it
}

// committer owns the queue and the committer goroutine.
type committer struct {
	s       *Store
	queue   chan *write   // unbuffered: a send succeeds only when the committer takes it
	flush   chan struct{} // buffered (1): token marks wait for a group (marks.go)
	quit    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

func newCommitter(s *Store) *committer {
	c := &committer{s: s, queue: make(chan *write), flush: make(chan struct{}, 1), quit: make(chan struct{}), stopped: make(chan struct{})}
	s.marks = newMarkSet(c.flush)
	go c.run()
	return c
}

// stop ends the committer after its current group and a last one for the
// token marks still waiting; later writes fail with store.ErrUnavailable.
func (c *committer) stop() {
	c.once.Do(func() { close(c.quit) })
	<-c.stopped
}

// grouped runs fn in the next group transaction and returns its outcome
// once that transaction committed or failed. fn gets the group's context,
// not ctx, and returns already-mapped errors. If ctx ends while the group
// is in flight, the write may still be committed (a record without an
// answer, never an answer without its record).
func (s *Store) grouped(ctx context.Context, what string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.enqueue(ctx, what, &write{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// enqueue hands w to the committer and waits for its answer.
func (s *Store) enqueue(ctx context.Context, what string, w *write) error {
	if s.gc == nil { // read-only store: a plain transaction (SQLite refuses the write)
		return s.inTx(ctx, func(tx *sql.Tx) error { return w.fn(ctx, tx) })
	}
	select {
	case s.gc.queue <- w:
	case <-s.gc.quit:
		return fmt.Errorf("sqlite: %s: store closed: %w", what, store.ErrUnavailable)
	case <-ctx.Done():
		return callerGaveUp(ctx, what)
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return callerGaveUp(ctx, what)
	}
}

// callerGaveUp is the error of a caller whose context ended while its write
// waited: past a deadline, the database did not answer in time
// (store.ErrUnavailable); cancelled, the caller went away.
func callerGaveUp(ctx context.Context, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("sqlite: %s: %w: %w", what, store.ErrUnavailable, ctx.Err())
	}
	return fmt.Errorf("sqlite: %s: %w", what, ctx.Err())
}

func (c *committer) run() {
	defer close(c.stopped)
	for {
		var first *write
		select {
		case first = <-c.queue:
		case <-c.flush:
			if c.s.marks.due(time.Now()) {
				c.commit(nil)
			}
			continue
		case <-c.quit:
			if c.s.marks.waiting() {
				c.commit(nil)
			}
			return
		}
		group := []*write{first}
	fill:
		for len(group) < maxGroup {
			select {
			case w := <-c.queue:
				group = append(group, w)
			default:
				break fill
			}
		}
		c.commit(group)
	}
}

// commit runs one group and hands every caller its result.
func (c *committer) commit(group []*write) {
	live := group[:0]
	for _, w := range group {
		if w.ctx.Err() != nil {
			w.done <- callerGaveUp(w.ctx, "write not started")
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 && !c.s.marks.waiting() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
	defer cancel()
	errs, err := c.s.runGroup(ctx, live)
	for i, w := range live {
		switch {
		case err != nil:
			w.done <- fmt.Errorf("sqlite: group of %d writes: %w", len(live), err)
		default:
			w.done <- errs[i]
		}
	}
}

// runGroup runs the writes in one transaction, each in its own savepoint,
// and commits. errs are the writes' own failures (rolled back to their
// savepoints); err is a failure of the transaction itself, after which
// nothing of the group is committed. The token marks waiting for a group
// go first (marks.go); they are settled if the transaction commits and wait
// for the next group if it does not.
func (s *Store) runGroup(ctx context.Context, group []*write) (errs []error, err error) {
	marks := s.marks.take()
	defer func() { s.marks.settle(marks, err == nil) }()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", mapErr(err))
	}
	defer func() { _ = tx.Rollback() }()
	for _, m := range marks {
		if err := s.markWrite(m.key, m.expiresAt, m.now)(ctx, tx); err != nil {
			if !errors.Is(err, store.ErrConflict) {
				return nil, fmt.Errorf("writing token marks: %w", err)
			}
			// Answered "not used" from memory and a read, and yet
			// recorded: only another writer of this file does that.
			slog.LogAttrs(ctx, slog.LevelError, "token mark found already recorded after it was answered unused",
				slog.String("decision", "error"), slog.String("reason", "token_mark_raced"))
		}
	}
	errs = make([]error, len(group))
	for i, w := range group {
		if _, err := s.txExec(ctx, tx, savepointSQL); err != nil {
			return nil, fmt.Errorf("savepoint: %w", mapErr(err))
		}
		if errs[i] = w.fn(ctx, tx); errs[i] != nil {
			// Undo this write only. If SQLite already rolled the whole
			// transaction back (an I/O error, a full disk), this fails and
			// so does the group.
			if _, err := s.txExec(ctx, tx, rollbackToSQL); err != nil {
				return nil, fmt.Errorf("%w (rolling back after: %w)", mapErr(err), errs[i])
			}
		}
		if _, err := s.txExec(ctx, tx, releaseSQL); err != nil {
			return nil, fmt.Errorf("release savepoint: %w", mapErr(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", mapErr(err))
	}
	return errs, nil
}

// txExec runs query in tx with the write connection's prepared statement:
// SQLite parses each statement of the enrollment path once, not on every
// call. A statement that does not prepare runs unprepared (and fails there).
func (s *Store) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if st := s.prepared(ctx, s.w, query); st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// txQueryRow is txExec's QueryRow.
func (s *Store) txQueryRow(ctx context.Context, tx *sql.Tx, query string, args ...any) *sql.Row {
	if st := s.prepared(ctx, s.w, query); st != nil {
		return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// readRow is QueryRow on the read pool with a prepared statement (prepared
// once per read connection by database/sql).
func (s *Store) readRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.prepared(ctx, s.r, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.r.QueryRowContext(ctx, query, args...)
}

// prepared is db's cached prepared statement for query, or nil if it does
// not prepare. The write connection's statements are prepared at Open
// (prepareWrites): preparing one on the write pool later could wait for
// the one connection that the calling transaction holds.
func (s *Store) prepared(ctx context.Context, db *sql.DB, query string) *sql.Stmt {
	key := stmtKey{db: db, query: query}
	if st, ok := s.stmts.Load(key); ok {
		return st.(*sql.Stmt)
	}
	if db == s.w {
		return nil
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if prev, loaded := s.stmts.LoadOrStore(key, st); loaded {
		_ = st.Close()
		return prev.(*sql.Stmt)
	}
	return st
}

// prepareWrites prepares the enrollment path's writes on the write
// connection, before anything else uses it.
func (s *Store) prepareWrites(ctx context.Context) error {
	for _, q := range []string{insertCertificateSQL, insertLineageSQL, supersedeSQL, markTokenSQL, auditHeadSQL, insertAuditSQL,
		savepointSQL, rollbackToSQL, releaseSQL} {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", mapErr(err))
		}
		s.stmts.Store(stmtKey{db: s.w, query: q}, st)
	}
	return nil
}

type stmtKey struct {
	db    *sql.DB
	query string
}

// closeStatements closes the cached prepared statements.
func (s *Store) closeStatements() {
	s.stmts.Range(func(k, v any) bool {
		_ = v.(*sql.Stmt).Close()
		s.stmts.Delete(k)
		return true
	})
}
