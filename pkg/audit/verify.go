package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Source reads the audit log in Seq order; store.Store fits.
type Source interface {
	AuditEntries(ctx context.Context, afterSeq int64, limit int) ([]store.AuditEntry, error)
}

// Kind is what happened to the first broken entry.
type Kind string

// The ways a chain breaks.
const (
	// KindAltered: an entry's fields no longer hash to its stored hash, or
	// its hash was recomputed so that the next entry's link no longer holds.
	KindAltered Kind = "altered"
	// KindRemoved: entries are missing (a gap in Seq, or the log ends before
	// the expected head).
	KindRemoved Kind = "removed"
	// KindReordered: an intact entry sits at another position than the one
	// it was appended at.
	KindReordered Kind = "reordered"
	// KindCheckpointInvalid: a stored checkpoint does not verify with the
	// trusted checkpoint key (forged, altered, or signed by another key).
	KindCheckpointInvalid Kind = "checkpoint invalid"
	// KindCheckpointsMissing: no checkpoint was signed for longer than
	// allowed while the CA ran (checkpoints removed, or an unclean stop).
	KindCheckpointsMissing Kind = "checkpoints missing"
)

// Finding names the first place where the chain is broken.
type Finding struct {
	// Seq is the position of the first entry that is not what was appended
	// there (for KindRemoved: the first missing Seq).
	Seq    int64
	Kind   Kind
	Detail string
}

func (f *Finding) String() string {
	return fmt.Sprintf("entry %d %s: %s", f.Seq, f.Kind, f.Detail)
}

// ErrBroken is wrapped by the error Verify returns for a broken chain; the
// error is a *BrokenError carrying the Finding.
var ErrBroken = errors.New("audit: the audit log's hash chain is broken")

// BrokenError is a broken chain.
type BrokenError struct{ Finding Finding }

func (e *BrokenError) Error() string { return ErrBroken.Error() + ": " + e.Finding.String() }

// Unwrap makes errors.Is(err, ErrBroken) true.
func (e *BrokenError) Unwrap() error { return ErrBroken }

// Anchor is an entry known from elsewhere (a previous verify run, a copy
// kept off the database): the chain must reach it, with this hash. It catches
// entries removed at the end of the log, which the chain alone cannot.
type Anchor struct {
	Seq  int64
	Hash []byte
}

// Options tune Verify. The zero value verifies the whole log in pages of
// DefaultPageSize.
type Options struct {
	// PageSize is how many entries are read per query.
	PageSize int
	// Anchor, when Seq > 0, must be in the chain with its Hash.
	Anchor Anchor
	// Progress, when set, is called after each page with the last Seq read.
	Progress func(lastSeq int64)
	// Checkpoints, already checked to be validly signed, must each be in
	// the chain: the entry at their Seq has their Hash (Seq 0 names the
	// empty log and is always reached).
	Checkpoints []store.AuditCheckpoint
	// Base, when Seq > 0, is the entry the retained log begins after:
	// entries up to Base.Seq were archived and removed, so the first entry
	// read must be Base.Seq+1 and link to Base.Hash. VerifySigned sets it
	// from a signed checkpoint; Verify takes it as given.
	Base Anchor
}

// DefaultPageSize is the page size of Verify.
const DefaultPageSize = 1000

// reorderWindow bounds the positions Verify tries when looking for where an
// entry that does not hash at its own Seq was appended.
const reorderWindow = 2048

// Report is the outcome of a verification that read the whole log.
type Report struct {
	// Entries is how many entries were read and checked.
	Entries int64
	// Head is the last entry's Seq and Hash (zero for an empty log): keep it
	// to pass as an Anchor next time.
	Head Anchor
	// FirstTime is the first entry's Time (zero for an empty log).
	FirstTime time.Time
	// First is the first entry's Seq (0 for an empty log): 1 unless a
	// prefix was archived and removed.
	First int64
	// Archives are the audit_archive entries read (ca audit archive
	// --remove), in Seq order; Archive is the one that removed the prefix
	// the log now begins after (VerifySigned), zero if none was removed.
	Archives []ArchiveRecord
	Archive  ArchiveRecord
	// Checkpoints is how many signed checkpoints were checked
	// (VerifyCheckpointed), and Latest the latest of them by Time.
	Checkpoints int
	Latest      store.AuditCheckpoint
}

// Verify walks the whole audit log from Seq 1 (from opts.Base.Seq+1 when a
// prefix was archived) in pages and checks that Seqs are contiguous from
// there, that each entry's PrevHash is the previous entry's
// Hash, and that each Hash is store.AuditHash of the entry. It returns the
// Report of what it read and, for a broken chain, a *BrokenError (wrapping
// ErrBroken) naming the first broken entry; any other error is the source's,
// wrapped.
func Verify(ctx context.Context, src Source, opts Options) (Report, error) {
	size := opts.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	var rep Report
	prev := opts.Base.Hash
	expect := opts.Base.Seq + 1
	bySeq := map[int64][]store.AuditCheckpoint{}
	for _, c := range opts.Checkpoints {
		if c.Seq > 0 {
			bySeq[c.Seq] = append(bySeq[c.Seq], c)
		}
	}
	for {
		page, err := src.AuditEntries(ctx, expect-1, size)
		if err != nil {
			return rep, fmt.Errorf("audit: reading entries after %d: %w", expect-1, err)
		}
		for i := range page {
			e := &page[i]
			if f := check(e, expect, prev); f != nil {
				return rep, &BrokenError{Finding: *f}
			}
			if a := opts.Anchor; a.Seq == e.Seq && !bytes.Equal(a.Hash, e.Hash) {
				return rep, &BrokenError{Finding: Finding{Seq: e.Seq, Kind: KindAltered,
					Detail: fmt.Sprintf("the chain was rewritten up to here: hash %s, the anchor says %s", short(e.Hash), short(a.Hash))}}
			}
			for _, c := range bySeq[e.Seq] {
				if !bytes.Equal(c.Hash, e.Hash) {
					return rep, &BrokenError{Finding: Finding{Seq: e.Seq, Kind: KindAltered,
						Detail: fmt.Sprintf("the chain was rewritten up to here: hash %s, checkpoint %d signed %s at %s",
							short(e.Hash), c.ID, short(c.Hash), c.Time.Format(time.RFC3339))}}
				}
			}
			if rep.Entries == 0 {
				rep.FirstTime = e.Time
				rep.First = e.Seq
			}
			if e.Action == ArchiveAction {
				if r, ok := parseArchiveRecord(e); ok {
					rep.Archives = append(rep.Archives, r)
				}
			}
			prev = e.Hash
			expect = e.Seq + 1
			rep.Entries++
			rep.Head = Anchor{Seq: e.Seq, Hash: e.Hash}
		}
		if opts.Progress != nil && len(page) > 0 {
			opts.Progress(rep.Head.Seq)
		}
		if len(page) < size {
			break
		}
	}
	if a := opts.Anchor; a.Seq > rep.Head.Seq {
		return rep, &BrokenError{Finding: Finding{Seq: rep.Head.Seq + 1, Kind: KindRemoved,
			Detail: fmt.Sprintf("the log ends at entry %d but the anchor names entry %d", rep.Head.Seq, a.Seq)}}
	}
	var beyond *store.AuditCheckpoint
	for i, c := range opts.Checkpoints {
		if c.Seq > rep.Head.Seq && (beyond == nil || c.Seq > beyond.Seq) {
			beyond = &opts.Checkpoints[i]
		}
	}
	if beyond != nil {
		return rep, &BrokenError{Finding: Finding{Seq: rep.Head.Seq + 1, Kind: KindRemoved,
			Detail: fmt.Sprintf("the log ends at entry %d but checkpoint %d signed entry %d at %s",
				rep.Head.Seq, beyond.ID, beyond.Seq, beyond.Time.Format(time.RFC3339))}}
	}
	return rep, nil
}

// check returns what is wrong with e, read where entry number expect was due
// after an entry whose hash is prev, or nil.
func check(e *store.AuditEntry, expect int64, prev []byte) *Finding {
	if e.Seq != expect {
		detail := fmt.Sprintf("entry %d is missing (the next entry read is %d)", expect, e.Seq)
		if e.Seq > expect+1 {
			detail = fmt.Sprintf("entries %d to %d are missing", expect, e.Seq-1)
		}
		return &Finding{Seq: expect, Kind: KindRemoved, Detail: detail}
	}
	if !bytes.Equal(store.AuditHash(e.PrevHash, *e), e.Hash) {
		if orig, ok := appendedAt(e); ok {
			return &Finding{Seq: e.Seq, Kind: KindReordered,
				Detail: fmt.Sprintf("it holds the entry appended as %d (%s %s by %s)", orig, e.Action, e.Decision, e.Actor)}
		}
		return &Finding{Seq: e.Seq, Kind: KindAltered,
			Detail: fmt.Sprintf("its fields do not hash to its stored hash %s", short(e.Hash))}
	}
	if !bytes.Equal(e.PrevHash, prev) {
		if expect == 1 {
			return &Finding{Seq: 1, Kind: KindAltered, Detail: "the first entry links to a predecessor"}
		}
		return &Finding{Seq: expect - 1, Kind: KindAltered,
			Detail: fmt.Sprintf("its hash was rewritten: entry %d links to %s, not to entry %d's hash %s",
				expect, short(e.PrevHash), expect-1, short(prev))}
	}
	return nil
}

// appendedAt looks for the Seq under which e's fields and PrevHash hash to
// its stored Hash, within reorderWindow positions of where it is.
func appendedAt(e *store.AuditEntry) (int64, bool) {
	probe := *e
	for d := int64(1); d <= reorderWindow; d++ {
		for _, s := range []int64{e.Seq + d, e.Seq - d} {
			if s < 1 {
				continue
			}
			probe.Seq = s
			if bytes.Equal(store.AuditHash(e.PrevHash, probe), e.Hash) {
				return s, true
			}
		}
	}
	return 0, false
}

func short(h []byte) string {
	if len(h) == 0 {
		return "(none)"
	}
	s := hex.EncodeToString(h)
	if len(s) > 16 {
		s = s[:16] + "…"
	}
	return s
}
