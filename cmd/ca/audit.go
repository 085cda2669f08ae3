package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/audit"
)

// cmdAudit runs `ca audit verify`: walk the audit log's hash chain on the
// configured database and name the first entry that was altered, removed or
// reordered. Exit 0 for an intact chain, 1 for a broken one (or a database
// error), 2 for bad arguments.
func cmdAudit(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: ca audit verify [--anchor SEQ:HASH] [--page-size N]", errUsage)
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	cfgPath := commonFlags(fs)
	anchor := fs.String("anchor", "", "SEQ:HEX-HASH of an entry recorded earlier (the head a previous run printed); the chain must still reach it with that hash")
	pageSize := fs.Int("page-size", audit.DefaultPageSize, "entries read per query")
	if err := parseFlagsOnly(fs, args[1:], stderr); err != nil {
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
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer st.Close()

	rep, err := audit.Verify(ctx, st, opts)
	var broken *audit.BrokenError
	switch {
	case errors.As(err, &broken):
		fmt.Fprintf(stdout, "audit log BROKEN at entry %d (%s): %s\n", broken.Finding.Seq, broken.Finding.Kind, broken.Finding.Detail)
		fmt.Fprintf(stdout, "%d entries before it verify\n", rep.Entries)
		return err
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "audit log intact: %d entries verified\n", rep.Entries)
	if rep.Head.Seq > 0 {
		fmt.Fprintf(stdout, "head %d:%s (keep it; pass it as --anchor next time to catch entries removed at the end)\n",
			rep.Head.Seq, hex.EncodeToString(rep.Head.Hash))
	}
	return nil
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
