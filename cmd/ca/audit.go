package main

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// cmdAudit runs `ca audit verify`, `ca audit archive` and `ca audit
// checkpoint-key`.
func cmdAudit(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "checkpoint-key" {
		return cmdAuditCheckpointKey(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "archive" {
		return cmdAuditArchive(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: ca audit verify [--checkpoint-key FILE] [--max-gap D] [--ca-stopped] [--anchor SEQ:HASH] [--page-size N] [--archive FILE]... | ca audit archive --before DURATION|SEQ --out FILE [--remove] | ca audit checkpoint-key", errUsage)
	}
	return cmdAuditVerify(ctx, args[1:], getenv, stdout, stderr)
}

// cmdAuditVerify walks the audit log's hash chain on the configured database
// and checks it against the signed checkpoints: every checkpoint verifies
// with the checkpoint key (pinned, or found in the key store; never taken
// from the database), the chain reaches each one, and none are missing. It
// names the first problem. It only reads: the database is opened read-only,
// never created or migrated. Exit 0 for an intact log, 1 for a broken one
// (or a database error), 2 for bad arguments.
func cmdAuditVerify(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	anchor := fs.String("anchor", "", "SEQ:HEX-HASH of an entry recorded earlier (the head a previous run printed); the chain must still reach it with that hash")
	pageSize := fs.Int("page-size", audit.DefaultPageSize, "entries read per query")
	pinned := fs.String("checkpoint-key", "", "PEM `FILE` of the checkpoint public key (as `ca audit checkpoint-key` prints it) to trust instead of the key store")
	maxGap := fs.Duration("max-gap", 0, "longest time allowed without a checkpoint (default: twice audit.checkpoint_interval plus a minute)")
	stopped := fs.Bool("ca-stopped", false, "the CA is not running: its last checkpoint, a graceful shutdown, may be old")
	var archives fileList
	fs.Var(&archives, "archive", "an archive `FILE` written by `ca audit archive` to verify too (repeatable)")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	opts := audit.Options{PageSize: *pageSize}
	if *anchor != "" {
		a, err := parseAnchor(*anchor)
		if err != nil {
			return err
		}
		opts.Anchor = a
	}
	if *maxGap < 0 {
		return fmt.Errorf("%w: --max-gap must not be negative", errUsage)
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	if *maxGap == 0 {
		*maxGap = 2*cfg.Audit.CheckpointInterval + time.Minute
	}
	log := newLogger(cfg, stderr)
	st, err := storeopen.OpenReadOnly(ctx, cfg.DatabaseURL)
	switch {
	case errors.Is(err, store.ErrSchemaMismatch):
		return fmt.Errorf("database schema is not version %d; run `ca migrate up` first (ca audit verify never migrates): %w", storeopen.ExpectedVersion, err)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("no database to verify (ca audit verify never creates one): %w", err)
	case err != nil:
		return fmt.Errorf("opening the database read-only: %w", err)
	}
	defer st.Close()
	key, keySource, err := trustedCheckpointKey(ctx, cfg, *pinned, log)
	if err != nil {
		return err
	}

	rep, err := audit.VerifyCheckpointed(ctx, st, opts, audit.CheckpointPolicy{
		Key: key, MaxGap: *maxGap, Now: clock.Real{}.Now(), Stopped: *stopped})
	var broken *audit.BrokenError
	switch {
	case errors.As(err, &broken):
		fmt.Fprintf(stdout, "audit log BROKEN at entry %d (%s): %s\n", broken.Finding.Seq, broken.Finding.Kind, broken.Finding.Detail)
		switch broken.Finding.Kind {
		case audit.KindAltered, audit.KindRemoved, audit.KindReordered:
			fmt.Fprintf(stdout, "%d entries before it verify\n", rep.Entries)
		}
		return err
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "audit log intact: %d entries verified\n", rep.Entries)
	if rep.Archive.Seq > 0 {
		fmt.Fprintf(stdout, "the log begins at entry %d: entries %d to %d were archived and removed (audit entry %d, archive %s, sha256 %s), and a signed checkpoint covers entry %d\n",
			rep.First, rep.Archive.FirstSeq, rep.Archive.ThroughSeq, rep.Archive.Seq, rep.Archive.ArchiveFile, rep.Archive.ArchiveSHA256, rep.Archive.ThroughSeq)
	}
	if rep.Checkpoints > 0 {
		fmt.Fprintf(stdout, "%d signed checkpoints verified with the checkpoint key %s; the latest (%s, %s) covers entries up to %d",
			rep.Checkpoints, keySource, rep.Latest.Kind, rep.Latest.Time.Format(time.RFC3339), rep.Latest.Seq)
		if n := rep.Head.Seq - rep.Latest.Seq; n > 0 {
			fmt.Fprintf(stdout, "; the %d entries after it are not signed yet", n)
		}
		fmt.Fprintln(stdout)
	} else {
		fmt.Fprintln(stdout, "no signed checkpoints yet: entries removed at the end cannot be detected without --anchor")
	}
	if rep.Head.Seq > 0 {
		fmt.Fprintf(stdout, "head %d:%s (keep it; pass it as --anchor next time to catch entries removed at the end)\n",
			rep.Head.Seq, hex.EncodeToString(rep.Head.Hash))
	}
	if len(archives) > 0 {
		if key == nil {
			return errors.New("no audit checkpoint key (key store or --checkpoint-key): archives are verified against the signed checkpoints")
		}
		return verifyArchives(ctx, st, archives, key, rep, stdout)
	}
	return nil
}

// cmdAuditCheckpointKey prints the checkpoint public key from the key store
// as PEM, to pin it for `ca audit verify --checkpoint-key` on a machine
// without access to the key store. It touches no database.
func cmdAuditCheckpointKey(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit checkpoint-key", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	key, _, err := trustedCheckpointKey(ctx, cfg, "", newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	if key == nil {
		return errors.New("no audit checkpoint key in the key store yet: `ca serve` creates it when it first starts")
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return err
	}
	return pem.Encode(stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// parseAnchor reads SEQ:HEX.
func parseAnchor(s string) (audit.Anchor, error) {
	seqS, hashS, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqS, 10, 64)
	if !ok || err != nil || seq < 1 {
		return audit.Anchor{}, fmt.Errorf("%w: --anchor must be SEQ:HEX-HASH as printed by ca audit verify", errUsage)
	}
	h, err := hex.DecodeString(hashS)
	if err != nil || len(h) == 0 {
		return audit.Anchor{}, fmt.Errorf("%w: --anchor hash must be hex", errUsage)
	}
	return audit.Anchor{Seq: seq, Hash: h}, nil
}
