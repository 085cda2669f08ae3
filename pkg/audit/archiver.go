package audit

import (
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// ErrNothingToArchive means no signed checkpoint covers an entry in the
// range asked for, so no archive can end there.
var ErrNothingToArchive = errors.New("audit: no signed checkpoint closes an archivable range")

// ErrTooYoung means the archive would remove entries younger than the
// audit retention.
var ErrTooYoung = errors.New("audit: the entries are younger than retention.audit")

// ArchiveStore is what archiving needs of the store; store.Store fits.
type ArchiveStore interface {
	CheckpointSource
	RemoveAuditPrefix(ctx context.Context, through int64, throughHash []byte, record store.AuditEntry) (store.AuditEntry, int64, error)
}

// ArchivePlan is what `ca audit archive` will export: the retained log's
// entries from First through Closing.Seq, with the verified checkpoints.
type ArchivePlan struct {
	First       int64
	Closing     store.AuditCheckpoint
	Checkpoints []store.AuditCheckpoint
	Report      Report
}

// PlanArchive verifies the live log with key (VerifySigned: signatures,
// chain, a removed prefix only as an archive) and picks the end of the
// archive: the latest signed checkpoint of an entry at or before bound and
// at or after the first retained one. bound <= 0 means up to the entry
// last appended at or before before (a time). ErrNothingToArchive if no
// checkpoint qualifies.
func PlanArchive(ctx context.Context, src CheckpointSource, key crypto.PublicKey, bound int64, before time.Time) (ArchivePlan, error) {
	if key == nil {
		return ArchivePlan{}, fmt.Errorf("%w: archiving needs signed checkpoints", ErrNoCheckpointKey)
	}
	rep, cps, err := VerifySigned(ctx, src, Options{}, key)
	if err != nil {
		return ArchivePlan{}, err
	}
	if rep.Entries == 0 {
		return ArchivePlan{}, fmt.Errorf("%w: the audit log is empty", ErrNothingToArchive)
	}
	if bound <= 0 {
		if bound, err = lastEntryAtOrBefore(ctx, src, rep.First, before); err != nil {
			return ArchivePlan{}, err
		}
	}
	c, ok := ArchiveCut(cps, rep.First, bound)
	if !ok {
		return ArchivePlan{}, fmt.Errorf("%w: the retained log begins at entry %d and no signed checkpoint covers an entry from there to %d",
			ErrNothingToArchive, rep.First, bound)
	}
	return ArchivePlan{First: rep.First, Closing: c, Checkpoints: cps, Report: rep}, nil
}

// lastEntryAtOrBefore is the Seq of the last entry, from first on, whose
// Time is at or before t (first-1 if none). Entry times follow append
// order closely but are the callers' clocks, so it stops at the first entry
// after t.
func lastEntryAtOrBefore(ctx context.Context, src Source, first int64, t time.Time) (int64, error) {
	last := first - 1
	for {
		page, err := src.AuditEntries(ctx, last, DefaultPageSize)
		if err != nil {
			return 0, fmt.Errorf("audit: reading entries after %d: %w", last, err)
		}
		for _, e := range page {
			if e.Time.After(t) {
				return last, nil
			}
			last = e.Seq
		}
		if len(page) < DefaultPageSize {
			return last, nil
		}
	}
}

// CheckRetention refuses (ErrTooYoung) an archive whose last entry is
// younger than retention at now; retention 0 keeps nothing back.
func CheckRetention(sum ArchiveSummary, retention time.Duration, now time.Time) error {
	if retention > 0 && now.Sub(sum.LastTime) < retention {
		return fmt.Errorf("%w: entry %d is from %s, less than %s ago", ErrTooYoung, sum.Last, sum.LastTime.Format(time.RFC3339), retention)
	}
	return nil
}

// RemoveArchived removes the entries of a written and verified archive
// from the log, appending the audit_archive entry that records the range,
// the hash of its last entry, the closing checkpoint and the archive's
// SHA-256, all in one transaction (store.AuditArchiveStore). It returns the
// record, the appended entry and how many entries were removed.
func RemoveArchived(ctx context.Context, st ArchiveStore, sum ArchiveSummary, file, actor string, now time.Time) (ArchiveRecord, store.AuditEntry, int64, error) {
	rec := ArchiveRecord{FirstSeq: sum.First, ThroughSeq: sum.Last, ThroughHash: hex.EncodeToString(sum.LastHash),
		Entries: sum.Entries, CheckpointID: sum.Closing.ID, ArchiveSHA256: hex.EncodeToString(sum.SHA256), ArchiveFile: file}
	details, err := json.Marshal(rec)
	if err != nil {
		return ArchiveRecord{}, store.AuditEntry{}, 0, err
	}
	e, n, err := st.RemoveAuditPrefix(ctx, sum.Last, sum.LastHash, store.AuditEntry{
		Time: now, Actor: actor, Action: ArchiveAction, Target: fmt.Sprintf("audit_log:%d-%d", sum.First, sum.Last),
		Decision: "allow", Details: details})
	if err != nil {
		return ArchiveRecord{}, store.AuditEntry{}, 0, fmt.Errorf("audit: removing archived entries %d to %d: %w", sum.First, sum.Last, err)
	}
	rec.Seq = e.Seq
	return rec, e, n, nil
}
