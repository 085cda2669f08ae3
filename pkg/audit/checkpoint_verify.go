package audit

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// CheckpointSource reads the audit log and its checkpoints; store.Store
// fits.
type CheckpointSource interface {
	Source
	AuditCheckpoints(ctx context.Context, afterID int64, limit int) ([]store.AuditCheckpoint, error)
}

// ErrNoCheckpointKey means checkpoints exist but the verifier was given no
// trusted checkpoint key to check them with.
var ErrNoCheckpointKey = errors.New("audit: checkpoints exist but no trusted checkpoint key was given")

// CheckpointPolicy is what VerifyCheckpointed holds the checkpoints to.
type CheckpointPolicy struct {
	// Key is the trusted checkpoint public key, taken from the key store or
	// pinned by the operator, never from the database; nil if there is
	// none (then any stored checkpoint is an error, ErrNoCheckpointKey).
	Key crypto.PublicKey
	// MaxGap is the longest time allowed between two consecutive
	// checkpoints, and between the latest one and Now.
	MaxGap time.Duration
	// Now is the verifier's time.
	Now time.Time
	// Stopped says the operator asserts the CA is not running: a latest
	// checkpoint that is a graceful shutdown may then be older than MaxGap.
	Stopped bool
}

// VerifyCheckpointed verifies the chain as Verify does, and also that every
// stored checkpoint is signed by pol.Key, that the chain reaches each one
// (the entry at its Seq has its Hash; a log ending before it was
// truncated), and that none are missing: consecutive checkpoints, ordered
// by their signed Time, are at most pol.MaxGap apart unless the earlier is a
// graceful shutdown and the later a startup (the CA was down); the latest
// is at most pol.MaxGap before pol.Now unless it is a shutdown and
// pol.Stopped; and a non-empty log without any checkpoint is missing them
// when a key exists (a CA with a checkpoint key signs one when it starts)
// or its first entry is older than pol.MaxGap. The first finding is
// returned as a *BrokenError, checkpoint signatures first, then the
// chain, then gaps. A log whose first entries were archived and removed
// verifies from its first retained entry (see VerifySigned).
func VerifyCheckpointed(ctx context.Context, src CheckpointSource, opts Options, pol CheckpointPolicy) (Report, error) {
	rep, cps, err := VerifySigned(ctx, src, opts, pol.Key)
	if err != nil {
		return rep, err
	}
	rep.Checkpoints = len(cps)
	slices.SortStableFunc(cps, func(a, b store.AuditCheckpoint) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return int(a.ID - b.ID)
	})
	if len(cps) == 0 {
		if rep.Entries > 0 && (pol.Key != nil || pol.Now.Sub(rep.FirstTime) > pol.MaxGap) {
			return rep, &BrokenError{Finding: Finding{Seq: 1, Kind: KindCheckpointsMissing,
				Detail: fmt.Sprintf("%d entries since %s and no signed checkpoint", rep.Entries, rep.FirstTime.Format(time.RFC3339))}}
		}
		return rep, nil
	}
	for i := 1; i < len(cps); i++ {
		a, b := cps[i-1], cps[i]
		if b.Time.Sub(a.Time) <= pol.MaxGap || (a.Kind == store.CheckpointShutdown && b.Kind == store.CheckpointStartup) {
			continue
		}
		return rep, &BrokenError{Finding: Finding{Seq: a.Seq + 1, Kind: KindCheckpointsMissing,
			Detail: fmt.Sprintf("no checkpoint for %s, between checkpoint %d (%s, %s) and checkpoint %d (%s, %s), more than the %s allowed: checkpoints were removed, or the CA stopped without a graceful shutdown",
				b.Time.Sub(a.Time).Round(time.Second), a.ID, a.Kind, a.Time.Format(time.RFC3339), b.ID, b.Kind, b.Time.Format(time.RFC3339), pol.MaxGap)}}
	}
	last := cps[len(cps)-1]
	rep.Latest = last
	if pol.Now.Sub(last.Time) > pol.MaxGap && !(pol.Stopped && last.Kind == store.CheckpointShutdown) {
		detail := fmt.Sprintf("no checkpoint since checkpoint %d (%s, %s), more than the %s allowed: checkpoints were removed, or the CA is not running",
			last.ID, last.Kind, last.Time.Format(time.RFC3339), pol.MaxGap)
		if last.Kind == store.CheckpointShutdown {
			detail += " (it stopped gracefully then: if it is still stopped, say so with --ca-stopped)"
		}
		return rep, &BrokenError{Finding: Finding{Seq: last.Seq + 1, Kind: KindCheckpointsMissing, Detail: detail}}
	}
	return rep, nil
}

// LoadCheckpoints reads every stored checkpoint, in ID order, in pages of
// size (DefaultPageSize when size <= 0).
func LoadCheckpoints(ctx context.Context, src CheckpointSource, size int) ([]store.AuditCheckpoint, error) {
	if size <= 0 {
		size = DefaultPageSize
	}
	var cps []store.AuditCheckpoint
	var after int64
	for {
		page, err := src.AuditCheckpoints(ctx, after, size)
		if err != nil {
			return nil, fmt.Errorf("audit: reading checkpoints after %d: %w", after, err)
		}
		cps = append(cps, page...)
		if len(page) < size {
			return cps, nil
		}
		after = page[len(page)-1].ID
	}
}

// VerifySigned is VerifyCheckpointed without the checks for missing
// checkpoints: every stored checkpoint verifies with key, the chain is
// intact and reaches each one, and a removed prefix of the log is accepted
// only as an archive (see verifyBase). It returns the checkpoints read.
func VerifySigned(ctx context.Context, src CheckpointSource, opts Options, key crypto.PublicKey) (Report, []store.AuditCheckpoint, error) {
	cps, err := LoadCheckpoints(ctx, src, opts.PageSize)
	if err != nil {
		return Report{}, nil, err
	}
	if len(cps) > 0 && key == nil {
		return Report{}, nil, fmt.Errorf("%w: %d checkpoints are stored; give the key store or --checkpoint-key", ErrNoCheckpointKey, len(cps))
	}
	for _, c := range cps {
		if err := VerifyCheckpoint(key, c); err != nil {
			return Report{}, nil, &BrokenError{Finding: Finding{Seq: c.Seq, Kind: KindCheckpointInvalid,
				Detail: fmt.Sprintf("checkpoint %d (%s, entry %d, %s): %v", c.ID, c.Kind, c.Seq, c.Time.Format(time.RFC3339), err)}}
		}
	}
	base, err := verifyBase(ctx, src, cps)
	if err != nil {
		return Report{}, nil, err
	}
	opts.Checkpoints = cps
	opts.Base = base
	rep, err := Verify(ctx, src, opts)
	if err != nil {
		return rep, nil, err
	}
	if base.Seq > 0 {
		rec, ok := rep.archiveOf(base)
		if !ok {
			return rep, nil, &BrokenError{Finding: Finding{Seq: 1, Kind: KindRemoved,
				Detail: fmt.Sprintf("entries 1 to %d were removed and a signed checkpoint covers entry %d, but no %s entry in the log records that removal",
					base.Seq, base.Seq, ArchiveAction)}}
		}
		rep.Archive = rec
	}
	return rep, cps, nil
}

// verifyBase is where the retained log begins: the zero Anchor when it
// begins at entry 1, else the entry before its first retained entry, which
// a validly signed checkpoint must cover with the hash that entry links to
// (so a prefix removed by `ca audit archive --remove` is accepted, and one
// removed anywhere else is not).
func verifyBase(ctx context.Context, src Source, cps []store.AuditCheckpoint) (Anchor, error) {
	page, err := src.AuditEntries(ctx, 0, 1)
	if err != nil {
		return Anchor{}, fmt.Errorf("audit: reading the first entry: %w", err)
	}
	if len(page) == 0 || page[0].Seq <= 1 {
		return Anchor{}, nil
	}
	first := page[0]
	for _, c := range cps {
		if c.Seq == first.Seq-1 && bytes.Equal(c.Hash, first.PrevHash) {
			return Anchor{Seq: c.Seq, Hash: c.Hash}, nil
		}
	}
	detail := fmt.Sprintf("entries 1 to %d are missing and no signed checkpoint covers entry %d with the hash %s that entry %d links to: they were removed without an archive",
		first.Seq-1, first.Seq-1, short(first.PrevHash), first.Seq)
	if first.Seq == 2 {
		detail = fmt.Sprintf("entry 1 is missing and no signed checkpoint covers it with the hash %s that entry 2 links to: it was removed without an archive", short(first.PrevHash))
	}
	return Anchor{}, &BrokenError{Finding: Finding{Seq: 1, Kind: KindRemoved, Detail: detail}}
}
