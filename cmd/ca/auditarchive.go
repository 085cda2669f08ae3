package main

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// cmdAuditArchive runs `ca audit archive --before DURATION|SEQ --out FILE
// [--remove]`: it verifies the live log against the signed checkpoints,
// writes the entries from the first retained one through the latest signed
// checkpoint at or before the bound to FILE (created, never overwritten),
// fsyncs it, reads it back and verifies it; with --remove (run as the
// migration owner: the runtime role cannot delete audit entries) it then
// removes exactly those entries in one transaction that appends an
// audit_archive entry recording the range, the hash of the last entry and
// the file's SHA-256. retention.audit refuses the removal of entries
// younger than it. Checkpoints are never removed.
func cmdAuditArchive(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit archive", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	before := fs.String("before", "", "archive entries older than this `DURATION` (Go syntax, e.g. 2160h), or up to this entry `SEQ`; the archive ends at the latest signed checkpoint within")
	out := fs.String("out", "", "the archive `FILE` to write (JSON lines; it must not exist)")
	remove := fs.Bool("remove", false, "remove the archived entries from the database after the archive is written and verified (migration owner only)")
	pinned := fs.String("checkpoint-key", "", "PEM `FILE` of the checkpoint public key to trust instead of the key store")
	actor := actorFlag(fs, getenv)
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	if *before == "" || *out == "" {
		return fmt.Errorf("%w: ca audit archive --before DURATION|SEQ --out FILE [--remove] [--checkpoint-key FILE]", errUsage)
	}
	if _, err := os.Lstat(*out); err == nil {
		return fmt.Errorf("%s exists: an archive is never overwritten", *out)
	}
	now := clock.Real{}.Now()
	var bound int64
	var cutoff time.Time
	if seq, err := strconv.ParseInt(*before, 10, 64); err == nil {
		if seq < 1 {
			return fmt.Errorf("%w: --before SEQ must be at least 1", errUsage)
		}
		bound = seq
	} else if d, err := time.ParseDuration(*before); err == nil && d >= 0 {
		cutoff = now.Add(-d)
	} else {
		return fmt.Errorf("%w: --before must be a duration (2160h) or an entry number", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	key, keySource, err := trustedCheckpointKey(ctx, cfg, *pinned, log)
	if err != nil {
		return err
	}
	if key == nil {
		return errors.New("no audit checkpoint key (key store or --checkpoint-key): an archive must end at a signed checkpoint")
	}
	st, err := openForAudit(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	plan, err := audit.PlanArchive(ctx, st, key, bound, cutoff)
	if err != nil {
		st.Close()
		return reportBroken(stdout, "audit log", err)
	}
	sum, err := writeArchiveFile(ctx, st, *out, plan, key, now)
	st.Close()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "archived entries %d to %d (%d) to %s, closed by checkpoint %d (%s, %s) verified with the checkpoint key %s\nsha256 %s\n",
		sum.First, sum.Last, sum.Entries, *out, sum.Closing.ID, sum.Closing.Kind, sum.Closing.Time.Format(time.RFC3339), keySource, hex.EncodeToString(sum.SHA256))
	if !*remove {
		fmt.Fprintln(stdout, "nothing removed (no --remove)")
		return nil
	}
	if err := audit.CheckRetention(sum, cfg.Retention.Audit, now); err != nil {
		return fmt.Errorf("%w; the archive is written, nothing was removed", err)
	}
	rw, err := storeopen.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("opening the database to remove archived entries: %w", err)
	}
	defer rw.Close()
	rec, e, n, err := audit.RemoveArchived(ctx, rw, sum, filepath.Base(*out), *actor, clock.Real{}.Now())
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("%w (the log changed since the archive was written; nothing was removed)", err)
		}
		return fmt.Errorf("%w (nothing was removed; removing audit entries needs the migration owner, not the runtime role)", err)
	}
	log.Info("audit entries archived and removed", "first_seq", rec.FirstSeq, "through_seq", rec.ThroughSeq,
		"entries", n, "checkpoint_id", rec.CheckpointID, "archive_sha256", rec.ArchiveSHA256, "audit_seq", e.Seq, "actor", *actor)
	fmt.Fprintf(stdout, "removed %d entries; audit entry %d records the removal; the log now begins at entry %d\n", n, e.Seq, rec.ThroughSeq+1)
	return nil
}

// openForAudit opens the database read-only, as `ca audit verify` does.
func openForAudit(ctx context.Context, url string) (store.Store, error) {
	st, err := storeopen.OpenReadOnly(ctx, url)
	switch {
	case errors.Is(err, store.ErrSchemaMismatch):
		return nil, fmt.Errorf("database schema is not version %d; run `ca migrate up` first: %w", storeopen.ExpectedVersion, err)
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("no database (ca audit never creates one): %w", err)
	case err != nil:
		return nil, fmt.Errorf("opening the database read-only: %w", err)
	}
	return st, nil
}

// writeArchiveFile writes plan to path (which must not exist), fsyncs it
// and its directory, then reads it back and verifies it with key against
// the stored checkpoints. On any failure the file is removed.
func writeArchiveFile(ctx context.Context, st audit.CheckpointSource, path string, plan audit.ArchivePlan, key crypto.PublicKey, now time.Time) (audit.ArchiveSummary, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return audit.ArchiveSummary{}, fmt.Errorf("archive file: %w", err)
	}
	fail := func(err error) (audit.ArchiveSummary, error) {
		_ = f.Close()
		_ = os.Remove(path)
		return audit.ArchiveSummary{}, err
	}
	written, err := audit.WriteArchive(ctx, st, f, plan.First, plan.Closing, plan.Checkpoints, now)
	if err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("archive file: fsync: %w", err))
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("archive file: %w", err))
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	sum, err := verifyArchiveFile(ctx, st, path, key)
	if err == nil && hex.EncodeToString(sum.SHA256) != hex.EncodeToString(written.SHA256) {
		err = errors.New("archive file: what was read back is not what was written")
	}
	if err != nil {
		_ = os.Remove(path)
		return audit.ArchiveSummary{}, fmt.Errorf("verifying the archive just written: %w", err)
	}
	return sum, nil
}

// verifyArchiveFile verifies the archive at path with key against every
// stored checkpoint.
func verifyArchiveFile(ctx context.Context, st audit.CheckpointSource, path string, key crypto.PublicKey) (audit.ArchiveSummary, error) {
	cps, err := audit.LoadCheckpoints(ctx, st, 0)
	if err != nil {
		return audit.ArchiveSummary{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return audit.ArchiveSummary{}, fmt.Errorf("archive file: %w", err)
	}
	defer f.Close()
	return audit.VerifyArchive(f, key, cps)
}

// verifyArchives checks each archive file after the live log verified (rep
// is its report): the file itself (VerifyArchive), that the live log
// continues from it, and, when an audit_archive entry recorded its
// removal, that the file is the one recorded (SHA-256).
func verifyArchives(ctx context.Context, st audit.CheckpointSource, files []string, key crypto.PublicKey, rep audit.Report, stdout io.Writer) error {
	for _, path := range files {
		sum, err := verifyArchiveFile(ctx, st, path, key)
		if err == nil {
			var note string
			if note, err = audit.ArchiveContinues(ctx, st, sum); err == nil {
				if rec, ok := rep.ArchiveRecordFor(sum); ok && rec.ArchiveSHA256 != hex.EncodeToString(sum.SHA256) {
					err = &audit.BrokenError{Finding: audit.Finding{Seq: sum.First, Kind: audit.KindAltered,
						Detail: fmt.Sprintf("its SHA-256 is %s, but audit entry %d recorded %s for the archive of entries %d to %d",
							hex.EncodeToString(sum.SHA256), rec.Seq, rec.ArchiveSHA256, rec.FirstSeq, rec.ThroughSeq)}}
				} else {
					recorded := "no audit_archive entry records its removal"
					if ok {
						recorded = fmt.Sprintf("audit entry %d records its removal with this SHA-256", rec.Seq)
					}
					fmt.Fprintf(stdout, "archive %s intact: entries %d to %d (%d), closed by signed checkpoint %d (%s, %s); %s; %s\n",
						path, sum.First, sum.Last, sum.Entries, sum.Closing.ID, sum.Closing.Kind, sum.Closing.Time.Format(time.RFC3339), note, recorded)
					continue
				}
			}
		}
		return reportBroken(stdout, "archive "+path, err)
	}
	return nil
}

// reportBroken prints a *audit.BrokenError as verify does and returns err.
func reportBroken(stdout io.Writer, what string, err error) error {
	var broken *audit.BrokenError
	if errors.As(err, &broken) {
		fmt.Fprintf(stdout, "%s BROKEN at entry %d (%s): %s\n", what, broken.Finding.Seq, broken.Finding.Kind, broken.Finding.Detail)
	}
	return err
}

// fileList is a repeatable flag.
type fileList []string

func (l *fileList) String() string { return strings.Join(*l, ",") }

func (l *fileList) Set(v string) error {
	if v == "" {
		return errors.New("empty file name")
	}
	*l = append(*l, v)
	return nil
}

// warnAuditRetention logs a warning at startup when retention.audit is set
// and the oldest retained audit entry is older than it: the log is never
// pruned automatically, an operator archives it (`ca audit archive`).
func warnAuditRetention(ctx context.Context, retention time.Duration, src audit.Source, now time.Time, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	first, err := src.AuditEntries(ctx, 0, 1)
	if err != nil || len(first) == 0 {
		return
	}
	if age := now.Sub(first[0].Time); age > retention {
		log.Warn("audit entries are older than retention.audit: archive them with `ca audit archive --before "+retention.String()+" --out FILE --remove`",
			"oldest_seq", first[0].Seq, "oldest_time", first[0].Time.Format(time.RFC3339), "retention", retention.String())
	}
}
