package audit

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// checkpointLeadership is the store leadership a replica holds while it
// decides whether a periodic checkpoint is due and writes it.
const checkpointLeadership = "audit-checkpoint"

// ErrChainTampered means the audit log no longer reaches a checkpoint this
// process signed or found valid: entries were removed or rewritten behind
// the CA's back. The Checkpointer then refuses to sign the new head.
var ErrChainTampered = errors.New("audit: the audit log no longer reaches an earlier signed checkpoint")

// CheckpointStore is what the Checkpointer needs of the store.
type CheckpointStore interface {
	AuditHead(ctx context.Context) (store.AuditEntry, error)
	AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]store.AuditEntry, error)
	InsertAuditCheckpoint(ctx context.Context, c store.AuditCheckpoint) (store.AuditCheckpoint, error)
	LatestAuditCheckpoint(ctx context.Context) (store.AuditCheckpoint, error)
	TryLease(ctx context.Context, name string) (lease context.Context, release func(), ok bool, err error)
}

// CheckpointerConfig is what a Checkpointer is built from; every field is
// required.
type CheckpointerConfig struct {
	Store CheckpointStore
	// Signer is the checkpoint key (CheckpointKeyName in the key store).
	Signer   crypto.Signer
	Clock    clock.Clock
	Log      *slog.Logger
	Interval time.Duration
}

// Checkpointer signs checkpoints of the audit head: periodically (one
// replica per interval, under store leadership), and on demand at startup
// and shutdown. Before signing it checks that the log still reaches the
// last checkpoint it wrote and the latest validly signed one in the store,
// so that a truncated or rewritten log is never signed over.
type Checkpointer struct {
	cfg   CheckpointerConfig
	keyID string

	mu   sync.Mutex
	last *store.AuditCheckpoint // the last checkpoint this process wrote
}

// NewCheckpointer checks cfg.
func NewCheckpointer(cfg CheckpointerConfig) (*Checkpointer, error) {
	if cfg.Store == nil || cfg.Signer == nil || cfg.Clock == nil || cfg.Log == nil || cfg.Interval <= 0 {
		return nil, errors.New("audit: checkpointer needs a store, a signer, a clock, a logger and a positive interval")
	}
	id, err := KeyID(cfg.Signer.Public())
	if err != nil {
		return nil, err
	}
	return &Checkpointer{cfg: cfg, keyID: id}, nil
}

// KeyID is the checkpoint key's identifier (see KeyID).
func (c *Checkpointer) KeyID() string { return c.keyID }

// Write signs and stores a checkpoint of the current audit head, and logs
// it. It fails with an error wrapping ErrChainTampered, writing nothing, if
// the log no longer reaches an earlier checkpoint.
func (c *Checkpointer) Write(ctx context.Context, kind store.CheckpointKind) (store.AuditCheckpoint, error) {
	if err := c.checkReached(ctx); err != nil {
		if errors.Is(err, ErrChainTampered) {
			c.cfg.Log.ErrorContext(ctx, "audit log tampered with: refusing to sign a checkpoint over it; run `ca audit verify`",
				"kind", string(kind), "error", err.Error())
		}
		return store.AuditCheckpoint{}, err
	}
	head, err := c.cfg.Store.AuditHead(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.AuditCheckpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	cp, err := SignCheckpoint(c.cfg.Signer, store.AuditCheckpoint{Seq: head.Seq, Hash: head.Hash, Time: c.cfg.Clock.Now(), Kind: kind})
	if err != nil {
		return store.AuditCheckpoint{}, err
	}
	cp, err = c.cfg.Store.InsertAuditCheckpoint(ctx, cp)
	if err != nil {
		return store.AuditCheckpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	c.mu.Lock()
	if c.last == nil || cp.Seq >= c.last.Seq {
		kept := cp
		c.last = &kept
	}
	c.mu.Unlock()
	c.cfg.Log.InfoContext(ctx, "audit checkpoint signed", "checkpoint_id", cp.ID, "kind", string(kind),
		"seq", cp.Seq, "hash", hex.EncodeToString(cp.Hash), "time", cp.Time.Format(time.RFC3339Nano), "key_id", cp.KeyID)
	return cp, nil
}

// checkReached checks the chain against the last checkpoint this process
// wrote and the latest stored one that verifies with the checkpoint key.
func (c *Checkpointer) checkReached(ctx context.Context) error {
	var known []store.AuditCheckpoint
	c.mu.Lock()
	if c.last != nil {
		known = append(known, *c.last)
	}
	c.mu.Unlock()
	latest, err := c.cfg.Store.LatestAuditCheckpoint(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("audit: checkpoint: %w", err)
	case VerifyCheckpoint(c.cfg.Signer.Public(), latest) != nil:
		// A row not signed by this key proves nothing; `ca audit verify`
		// reports it. It must not stop the real checkpoints.
		c.cfg.Log.ErrorContext(ctx, "the latest audit checkpoint in the database does not verify with the checkpoint key; run `ca audit verify`",
			"checkpoint_id", latest.ID, "seq", latest.Seq)
	default:
		known = append(known, latest)
	}
	for _, k := range known {
		if k.Seq == 0 {
			continue
		}
		page, err := c.cfg.Store.AuditEntries(ctx, k.Seq-1, 1)
		if err != nil {
			return fmt.Errorf("audit: checkpoint: %w", err)
		}
		if len(page) > 0 && page[0].Seq > k.Seq {
			archived, err := c.archivedThrough(ctx, k.Seq)
			if err != nil {
				return err
			}
			if archived {
				// `ca audit archive --remove` removed it; `ca audit verify`
				// checks the removal against the signed checkpoints.
				continue
			}
		}
		if len(page) == 0 || page[0].Seq != k.Seq {
			return fmt.Errorf("%w: entry %d, signed in checkpoint %d at %s, is gone", ErrChainTampered, k.Seq, k.ID, k.Time.Format(time.RFC3339))
		}
		if !bytes.Equal(page[0].Hash, k.Hash) {
			return fmt.Errorf("%w: entry %d hashes to %s, checkpoint %d signed %s", ErrChainTampered, k.Seq, short(page[0].Hash), k.ID, short(k.Hash))
		}
	}
	return nil
}

// Once writes a periodic checkpoint if this replica is the leader and the
// latest stored checkpoint is at least Interval old (less slack, the half
// of Run's tick), does not verify with the checkpoint key, or there is
// none. wrote says whether it did.
func (c *Checkpointer) Once(ctx context.Context) (wrote bool, err error) {
	lease, release, ok, err := c.cfg.Store.TryLease(ctx, checkpointLeadership)
	if err != nil {
		return false, fmt.Errorf("audit: checkpoint leadership: %w", err)
	}
	if !ok {
		return false, nil
	}
	defer release()
	ctx = lease // a leader cut off from the database stops within the lease's bound
	latest, err := c.cfg.Store.LatestAuditCheckpoint(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return false, fmt.Errorf("audit: checkpoint: %w", err)
	case VerifyCheckpoint(c.cfg.Signer.Public(), latest) != nil:
		// A row this key did not sign (say, forged with a time far in the
		// future) must not hold the real checkpoints back: write one.
	case c.cfg.Clock.Now().Sub(latest.Time) < c.cfg.Interval-c.tick()/2:
		return false, nil
	}
	if _, err := c.Write(ctx, store.CheckpointPeriodic); err != nil {
		return false, err
	}
	return true, nil
}

// tick is how often Run calls Once: a quarter of the interval, within 1 s
// and 15 s.
func (c *Checkpointer) tick() time.Duration {
	return min(max(c.cfg.Interval/4, time.Second), 15*time.Second)
}

// Run calls Once every tick until ctx is done, logging failures, and
// returns ctx's error.
func (c *Checkpointer) Run(ctx context.Context) error {
	t := time.NewTicker(c.tick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := c.Once(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrChainTampered) {
			c.cfg.Log.ErrorContext(ctx, "audit checkpoint failed", "error", err.Error())
		}
	}
}

// archivedThrough reports whether the retained log begins after entry seq:
// a prefix including it was archived and removed.
func (c *Checkpointer) archivedThrough(ctx context.Context, seq int64) (bool, error) {
	first, err := c.cfg.Store.AuditEntries(ctx, 0, 1)
	if err != nil {
		return false, fmt.Errorf("audit: checkpoint: %w", err)
	}
	return len(first) > 0 && first[0].Seq > seq, nil
}
