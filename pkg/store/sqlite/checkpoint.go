package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// Checkpointing (issue 20). SQLite's default moves the WAL into the database
// file on the committing connection, right after a commit, whenever the WAL
// passes 1,000 pages: under enrollment load that is every few group commits,
// on the committer's goroutine, and the same hot index pages (the tails of
// the created_at and expiry indexes, the audit log's last page) are copied
// and synced again at each one. So the write connection runs with
// wal_autocheckpoint off, and a checkpointer goroutine on a connection of
// its own runs a PASSIVE checkpoint at most once per checkpointInterval when
// anything was committed since the last one (PRAGMA data_version changed):
// each hot page is copied once per interval, and no commit waits for a copy.
//
// Durability is unchanged. Every commit still syncs the WAL
// (synchronous=FULL), and a checkpoint, which runs with the same settings,
// syncs the WAL before copying frames into the database file and the file
// after; only then may a writer start the WAL over. A checkpoint that fails
// or is cut short leaves the frames in the WAL, where every reader finds
// them and recovery after a crash replays them.
//
// A PASSIVE checkpoint never waits, so readers can keep it from finishing
// or the WAL from starting over; the WAL then grows. Once it holds
// walLimitPages frames the checkpointer runs a TRUNCATE checkpoint, which
// waits for the readers and the writer to let go, copies everything and
// truncates the WAL file. While it waits no new write transaction starts,
// so it waits at most checkpointBusyTimeout (the checkpointer connection's
// busy_timeout; the committer's is 10 s) and gives up until the next tick
// rather than stall enrollments behind a long read. Close runs a last PASSIVE
// checkpoint after the writes stopped (it does not wait: a shutdown is not
// held up by another process reading), and SQLite's close of the last
// connection to the file completes it and deletes the WAL.
//
// A checkpoint failure is not fatal (nothing is lost, the next tick tries
// again): it is reported as the failed statement to the store's observer
// (OpenObserved, the statement metrics) and kept as lastErr.
const (
	checkpointInterval = time.Second
	walLimitPages      = 16384 // 64 MiB of 4 KiB pages

	checkpointBusyTimeout = 250 * time.Millisecond
)

// checkpointer runs the checkpoints on its own connection.
type checkpointer struct {
	db       *sql.DB
	interval time.Duration
	limit    int
	quit     chan struct{}
	stopped  chan struct{}
	once     sync.Once

	mu      sync.Mutex
	version int64 // data_version at the last checkpoint
	lastErr error
}

func newCheckpointer(db *sql.DB, interval time.Duration, limit int) *checkpointer {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	k := &checkpointer{db: db, interval: interval, limit: limit, version: -1,
		quit: make(chan struct{}), stopped: make(chan struct{})}
	go k.run()
	return k
}

func (k *checkpointer) run() {
	defer close(k.stopped)
	t := time.NewTicker(k.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_, _ = k.checkpoint(context.Background(), false)
		case <-k.quit:
			return
		}
	}
}

// checkpoint runs a PASSIVE checkpoint if anything was committed since the
// last one (or force), then a TRUNCATE one if the WAL still holds
// k.limit frames or more. It returns the WAL's frames after the PASSIVE
// checkpoint, -1 if it did not run.
func (k *checkpointer) checkpoint(ctx context.Context, force bool) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	// data_version changes when another connection commits: a tick with
	// nothing new costs this one statement.
	var v int64
	if err := k.db.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
		return -1, k.failed(fmt.Errorf("sqlite: checkpoint: data_version: %w", mapErr(err)))
	}
	if v == k.version && !force {
		return -1, nil
	}
	log, err := k.run1(ctx, "PASSIVE")
	if err != nil {
		return -1, k.failed(err)
	}
	if log >= k.limit {
		if _, err := k.run1(ctx, "TRUNCATE"); err != nil {
			return log, k.failed(err)
		}
	}
	k.version, k.lastErr = v, nil
	return log, nil
}

// run1 runs one checkpoint in mode and returns the WAL's frames. A
// checkpoint that could not finish (busy: readers, or the writer for
// TRUNCATE) is not an error; the next one goes on from where it stopped.
func (k *checkpointer) run1(ctx context.Context, mode string) (int, error) {
	var busy, log, done int
	if err := k.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &log, &done); err != nil {
		return 0, fmt.Errorf("sqlite: checkpoint (%s): %w", mode, mapErr(err))
	}
	return log, nil
}

func (k *checkpointer) failed(err error) error {
	k.lastErr = err
	return err
}

// stop ends the ticks and runs the last checkpoint; the writers must have
// stopped. A failure of that checkpoint is returned and lost nothing: the
// frames stay in the WAL.
func (k *checkpointer) stop() error {
	k.once.Do(func() { close(k.quit) })
	<-k.stopped
	k.mu.Lock()
	defer k.mu.Unlock()
	_, err := k.run1(context.Background(), "PASSIVE")
	return err
}
