package audit

import (
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
// chain, then gaps.
func VerifyCheckpointed(ctx context.Context, src CheckpointSource, opts Options, pol CheckpointPolicy) (Report, error) {
	size := opts.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	var cps []store.AuditCheckpoint
	var after int64
	for {
		page, err := src.AuditCheckpoints(ctx, after, size)
		if err != nil {
			return Report{}, fmt.Errorf("audit: reading checkpoints after %d: %w", after, err)
		}
		cps = append(cps, page...)
		if len(page) < size {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(cps) > 0 && pol.Key == nil {
		return Report{}, fmt.Errorf("%w: %d checkpoints are stored; give the key store or --checkpoint-key", ErrNoCheckpointKey, len(cps))
	}
	for _, c := range cps {
		if err := VerifyCheckpoint(pol.Key, c); err != nil {
			return Report{}, &BrokenError{Finding: Finding{Seq: c.Seq, Kind: KindCheckpointInvalid,
				Detail: fmt.Sprintf("checkpoint %d (%s, entry %d, %s): %v", c.ID, c.Kind, c.Seq, c.Time.Format(time.RFC3339), err)}}
		}
	}
	opts.Checkpoints = cps
	rep, err := Verify(ctx, src, opts)
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
