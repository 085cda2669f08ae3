package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// An archive file holds a contiguous range of audit entries that `ca audit
// archive` exported, so that they can be removed from the database and
// still be verified later. It is JSON Lines, in this order:
//
//	{"type":"header","format":"workload-ca audit archive v1","first_seq":1,"last_seq":500,"entries":500,"created":"..."}
//	{"type":"checkpoint","id":7,"seq":500,"hash":"<hex>","time":"...","kind":"periodic","key_id":"<hex>","signature":"<base64>"}
//	{"type":"entry","seq":1,"time":"...","actor":"...",...,"prev_hash":"","hash":"<hex>"}
//
// The checkpoint lines are every stored checkpoint of an entry in
// [first_seq-1, last_seq]; one of them closes the archive (its seq is
// last_seq), and the one at first_seq-1, if any, links it to the archive
// before it. Each entry line has every field store.AuditHash covers, so
// the chain is checked line by line; details keep their exact bytes (as a
// JSON string when they are UTF-8, else as details_base64).

// ArchiveFormat names the archive file format in its header.
const ArchiveFormat = "workload-ca audit archive v1"

// ArchiveAction is the action of the audit entry that records the removal
// of an archived prefix.
const ArchiveAction = "audit_archive"

// maxArchiveLine bounds one line of an archive file.
const maxArchiveLine = 16 << 20

// ArchiveRecord is what the audit_archive entry says about a removal: its
// Details, plus the entry's own Seq.
type ArchiveRecord struct {
	Seq           int64  `json:"-"`
	FirstSeq      int64  `json:"first_seq"`
	ThroughSeq    int64  `json:"through_seq"`
	ThroughHash   string `json:"through_hash"` // hex
	Entries       int64  `json:"entries"`
	CheckpointID  int64  `json:"checkpoint_id"`
	ArchiveSHA256 string `json:"archive_sha256"` // hex SHA-256 of the archive file
	ArchiveFile   string `json:"archive_file"`   // its name when written
}

// parseArchiveRecord reads an audit_archive entry's Details.
func parseArchiveRecord(e *store.AuditEntry) (ArchiveRecord, bool) {
	var r ArchiveRecord
	if err := json.Unmarshal(e.Details, &r); err != nil || r.ThroughSeq < 1 {
		return ArchiveRecord{}, false
	}
	r.Seq = e.Seq
	return r, true
}

// archiveOf is the latest audit_archive record of a removal through base.
func (r *Report) archiveOf(base Anchor) (ArchiveRecord, bool) {
	for i := len(r.Archives) - 1; i >= 0; i-- {
		a := r.Archives[i]
		if a.ThroughSeq == base.Seq && a.ThroughHash == hex.EncodeToString(base.Hash) {
			return a, true
		}
	}
	return ArchiveRecord{}, false
}

// ArchiveRecordFor returns the latest audit_archive record in rep of a
// removal of exactly the range of sum, if any.
func (r *Report) ArchiveRecordFor(sum ArchiveSummary) (ArchiveRecord, bool) {
	for i := len(r.Archives) - 1; i >= 0; i-- {
		a := r.Archives[i]
		if a.FirstSeq == sum.First && a.ThroughSeq == sum.Last {
			return a, true
		}
	}
	return ArchiveRecord{}, false
}

type archiveHeader struct {
	Type    string    `json:"type"`
	Format  string    `json:"format"`
	First   int64     `json:"first_seq"`
	Last    int64     `json:"last_seq"`
	Entries int64     `json:"entries"`
	Created time.Time `json:"created"`
}

type archiveCheckpoint struct {
	Type      string    `json:"type"`
	ID        int64     `json:"id"`
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
}

type archiveEntry struct {
	Type          string    `json:"type"`
	Seq           int64     `json:"seq"`
	Time          time.Time `json:"time"`
	Actor         string    `json:"actor"`
	Action        string    `json:"action"`
	Target        string    `json:"target"`
	Decision      string    `json:"decision"`
	Reason        string    `json:"reason"`
	PolicyVersion string    `json:"policy_version"`
	RequestID     string    `json:"request_id"`
	Details       *string   `json:"details,omitempty"`
	DetailsBase64 []byte    `json:"details_base64,omitempty"`
	PrevHash      string    `json:"prev_hash"`
	Hash          string    `json:"hash"`
}

func toArchiveEntry(e store.AuditEntry) archiveEntry {
	a := archiveEntry{Type: "entry", Seq: e.Seq, Time: e.Time.UTC(), Actor: e.Actor, Action: e.Action, Target: e.Target,
		Decision: e.Decision, Reason: e.Reason, PolicyVersion: e.PolicyVersion, RequestID: e.RequestID,
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}
	if len(e.Details) > 0 {
		if utf8.Valid(e.Details) {
			d := string(e.Details)
			a.Details = &d
		} else {
			a.DetailsBase64 = e.Details
		}
	}
	return a
}

func (a archiveEntry) entry() (store.AuditEntry, error) {
	e := store.AuditEntry{Seq: a.Seq, Time: a.Time.UTC(), Actor: a.Actor, Action: a.Action, Target: a.Target,
		Decision: a.Decision, Reason: a.Reason, PolicyVersion: a.PolicyVersion, RequestID: a.RequestID}
	switch {
	case a.Details != nil:
		e.Details = json.RawMessage(*a.Details)
	case len(a.DetailsBase64) > 0:
		e.Details = a.DetailsBase64
	}
	var err1, err2 error
	e.PrevHash, err1 = hex.DecodeString(a.PrevHash)
	e.Hash, err2 = hex.DecodeString(a.Hash)
	if len(e.PrevHash) == 0 {
		e.PrevHash = nil
	}
	return e, errors.Join(err1, err2)
}

func toArchiveCheckpoint(c store.AuditCheckpoint) archiveCheckpoint {
	return archiveCheckpoint{Type: "checkpoint", ID: c.ID, Seq: c.Seq, Hash: hex.EncodeToString(c.Hash), Time: c.Time.UTC(),
		Kind: string(c.Kind), KeyID: c.KeyID, Signature: c.Signature}
}

func (a archiveCheckpoint) checkpoint() (store.AuditCheckpoint, error) {
	h, err := hex.DecodeString(a.Hash)
	if len(h) == 0 {
		h = nil
	}
	return store.AuditCheckpoint{ID: a.ID, Seq: a.Seq, Hash: h, Time: a.Time.UTC(), Kind: store.CheckpointKind(a.Kind),
		KeyID: a.KeyID, Signature: a.Signature}, err
}

// ArchiveSummary describes an archive file: the range of entries it holds,
// the hashes at both ends, its closing checkpoint and the file's SHA-256.
type ArchiveSummary struct {
	First, Last   int64
	Entries       int64
	FirstPrevHash []byte // the hash the first entry links to (nil when First is 1)
	LastHash      []byte
	LastTime      time.Time
	Closing       store.AuditCheckpoint
	Checkpoints   int // checkpoint lines in the file
	SHA256        []byte
}

// ArchiveCut is the checkpoint an archive of the retained log, which
// begins at entry first, may end at: the one with the highest Seq in
// [first, bound] (the latest by ID among equal Seqs); ok is false if no
// checkpoint covers an entry in that range. cps must be validly signed.
func ArchiveCut(cps []store.AuditCheckpoint, first, bound int64) (store.AuditCheckpoint, bool) {
	var best store.AuditCheckpoint
	ok := false
	for _, c := range cps {
		if c.Seq < max(first, 1) || c.Seq > bound {
			continue
		}
		if !ok || c.Seq > best.Seq || c.Seq == best.Seq && c.ID > best.ID {
			best, ok = c, true
		}
	}
	return best, ok
}

// WriteArchive writes the entries from first through closing.Seq, read
// from src, to w as an archive file, with every checkpoint of cps that
// covers an entry in [first-1, closing.Seq]. It checks that the entries it
// reads are contiguous and that the last has closing's Hash (the caller
// verified the chain before). It does not sync or close w.
func WriteArchive(ctx context.Context, src Source, w io.Writer, first int64, closing store.AuditCheckpoint, cps []store.AuditCheckpoint, now time.Time) (ArchiveSummary, error) {
	if first < 1 || closing.Seq < first {
		return ArchiveSummary{}, fmt.Errorf("audit: archive of entries %d to %d: nothing to archive", first, closing.Seq)
	}
	sum := sha256.New()
	bw := bufio.NewWriter(io.MultiWriter(w, sum))
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	out := ArchiveSummary{First: first, Last: closing.Seq, Entries: closing.Seq - first + 1, Closing: closing}
	if err := enc.Encode(archiveHeader{Type: "header", Format: ArchiveFormat, First: first, Last: closing.Seq,
		Entries: out.Entries, Created: now.UTC()}); err != nil {
		return ArchiveSummary{}, fmt.Errorf("audit: write archive: %w", err)
	}
	sorted := slices.Clone(cps)
	slices.SortFunc(sorted, func(a, b store.AuditCheckpoint) int { return int(a.ID - b.ID) })
	for _, c := range sorted {
		if c.Seq >= first-1 && c.Seq <= closing.Seq && (c.Seq > 0 || first == 1) {
			if err := enc.Encode(toArchiveCheckpoint(c)); err != nil {
				return ArchiveSummary{}, fmt.Errorf("audit: write archive: %w", err)
			}
			out.Checkpoints++
		}
	}
	next := first
	for next <= closing.Seq {
		page, err := src.AuditEntries(ctx, next-1, int(min(closing.Seq-next+1, DefaultPageSize)))
		if err != nil {
			return ArchiveSummary{}, fmt.Errorf("audit: reading entries after %d: %w", next-1, err)
		}
		if len(page) == 0 {
			return ArchiveSummary{}, fmt.Errorf("audit: entry %d is not in the log", next)
		}
		for _, e := range page {
			if e.Seq != next {
				return ArchiveSummary{}, fmt.Errorf("audit: entry %d is not in the log", next)
			}
			if e.Seq == first {
				out.FirstPrevHash = e.PrevHash
			}
			if err := enc.Encode(toArchiveEntry(e)); err != nil {
				return ArchiveSummary{}, fmt.Errorf("audit: write archive: %w", err)
			}
			out.LastHash, out.LastTime = e.Hash, e.Time
			next++
		}
	}
	if !bytes.Equal(out.LastHash, closing.Hash) {
		return ArchiveSummary{}, fmt.Errorf("audit: entry %d hashes to %s, its checkpoint %d signed %s", closing.Seq, short(out.LastHash), closing.ID, short(closing.Hash))
	}
	if err := bw.Flush(); err != nil {
		return ArchiveSummary{}, fmt.Errorf("audit: write archive: %w", err)
	}
	out.SHA256 = sum.Sum(nil)
	return out, nil
}

// archiveBroken is a finding in an archive file.
func archiveBroken(seq int64, kind Kind, format string, args ...any) error {
	return &BrokenError{Finding: Finding{Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)}}
}

// VerifyArchive reads an archive file from r and checks it with the
// trusted checkpoint key: every checkpoint line verifies with key; the
// entries are contiguous from the header's first_seq to its last_seq, each
// hashes to its hash and links to the one before (the first links to
// nothing when it is entry 1, else to the hash a validly signed checkpoint,
// in the file or in extra, covers entry first_seq-1 with); every checkpoint,
// in the file or in extra (the database's, checked with key too), of an
// entry in the range has that entry's hash; and a checkpoint in the file
// closes the last entry. The first problem is returned as a *BrokenError;
// a truncated or edited file fails. extra may be nil.
func VerifyArchive(r io.Reader, key crypto.PublicKey, extra []store.AuditCheckpoint) (ArchiveSummary, error) {
	if key == nil {
		return ArchiveSummary{}, fmt.Errorf("%w: an archive can only be verified against the checkpoint key", ErrNoCheckpointKey)
	}
	sum := sha256.New()
	sc := bufio.NewScanner(io.TeeReader(r, sum))
	sc.Buffer(make([]byte, 0, 64<<10), maxArchiveLine)
	line := 0
	next := func() ([]byte, bool) {
		if !sc.Scan() {
			return nil, false
		}
		line++
		return sc.Bytes(), true
	}
	raw, ok := next()
	var h archiveHeader
	if !ok || json.Unmarshal(raw, &h) != nil || h.Type != "header" || h.Format != ArchiveFormat || h.First < 1 || h.Last < h.First {
		if err := sc.Err(); err != nil {
			return ArchiveSummary{}, fmt.Errorf("audit: reading the archive: %w", err)
		}
		return ArchiveSummary{}, archiveBroken(0, KindAltered, "the first line is not an archive header of format %q", ArchiveFormat)
	}
	out := ArchiveSummary{First: h.First, Last: h.Last}
	bySeq := map[int64][]store.AuditCheckpoint{}
	for _, c := range extra {
		if err := VerifyCheckpoint(key, c); err != nil {
			return ArchiveSummary{}, archiveBroken(c.Seq, KindCheckpointInvalid, "checkpoint %d in the database (%s, entry %d): %v", c.ID, c.Kind, c.Seq, err)
		}
		bySeq[c.Seq] = append(bySeq[c.Seq], c)
	}
	var inFile []store.AuditCheckpoint
	expect := h.First
	var prev []byte
	for {
		raw, ok = next()
		if !ok {
			break
		}
		var kind struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(raw, &kind); err != nil {
			return out, archiveBroken(expect, KindAltered, "line %d is not JSON: %v", line, err)
		}
		switch kind.Type {
		case "checkpoint":
			var ac archiveCheckpoint
			if err := json.Unmarshal(raw, &ac); err != nil {
				return out, archiveBroken(expect, KindAltered, "line %d is not a checkpoint: %v", line, err)
			}
			c, err := ac.checkpoint()
			if err == nil {
				err = VerifyCheckpoint(key, c)
			}
			if err != nil {
				return out, archiveBroken(c.Seq, KindCheckpointInvalid, "checkpoint %d on line %d (%s, entry %d): %v", c.ID, line, c.Kind, c.Seq, err)
			}
			if expect != h.First {
				return out, archiveBroken(c.Seq, KindAltered, "checkpoint on line %d comes after the entries", line)
			}
			inFile = append(inFile, c)
			bySeq[c.Seq] = append(bySeq[c.Seq], c)
			out.Checkpoints++
		case "entry":
			var ae archiveEntry
			if err := json.Unmarshal(raw, &ae); err != nil {
				return out, archiveBroken(expect, KindAltered, "line %d is not an entry: %v", line, err)
			}
			e, err := ae.entry()
			if err != nil {
				return out, archiveBroken(ae.Seq, KindAltered, "line %d: %v", line, err)
			}
			if expect > h.Last {
				return out, archiveBroken(e.Seq, KindAltered, "line %d holds entry %d after the last entry %d the header names", line, e.Seq, h.Last)
			}
			if e.Seq == h.First {
				if err := linkFirst(&e, bySeq); err != nil {
					return out, err
				}
				prev = e.PrevHash
				out.FirstPrevHash = e.PrevHash
			}
			if f := check(&e, expect, prev); f != nil {
				return out, &BrokenError{Finding: *f}
			}
			for _, c := range bySeq[e.Seq] {
				if !bytes.Equal(c.Hash, e.Hash) {
					return out, archiveBroken(e.Seq, KindAltered, "entry %d hashes to %s, checkpoint %d signed %s at %s",
						e.Seq, short(e.Hash), c.ID, short(c.Hash), c.Time.Format(time.RFC3339))
				}
			}
			prev = e.Hash
			out.LastHash, out.LastTime = e.Hash, e.Time
			out.Entries++
			expect++
		default:
			return out, archiveBroken(expect, KindAltered, "line %d has unknown type %q", line, kind.Type)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("audit: reading the archive: %w", err)
	}
	if expect <= h.Last {
		return out, archiveBroken(expect, KindRemoved, "the archive ends at entry %d but its header names entries %d to %d: it was truncated", expect-1, h.First, h.Last)
	}
	closing := -1
	for i, c := range inFile {
		if c.Seq == h.Last && (closing < 0 || c.ID > inFile[closing].ID) {
			closing = i
		}
	}
	if closing < 0 {
		return out, archiveBroken(h.Last, KindRemoved, "no signed checkpoint in the archive closes its last entry %d", h.Last)
	}
	out.Closing = inFile[closing]
	out.SHA256 = sum.Sum(nil)
	return out, nil
}

// linkFirst checks that the archive's first entry e links to what a signed
// checkpoint says entry e.Seq-1 was (or to nothing for entry 1).
func linkFirst(e *store.AuditEntry, bySeq map[int64][]store.AuditCheckpoint) error {
	if e.Seq == 1 {
		if len(e.PrevHash) != 0 {
			return archiveBroken(1, KindAltered, "the first entry links to a predecessor")
		}
		return nil
	}
	for _, c := range bySeq[e.Seq-1] {
		if bytes.Equal(c.Hash, e.PrevHash) {
			return nil
		}
	}
	return archiveBroken(e.Seq, KindAltered, "the archive's first entry %d links to %s, which no signed checkpoint of entry %d confirms",
		e.Seq, short(e.PrevHash), e.Seq-1)
}

// ArchiveContinues checks that the live log in src carries on from the
// archive sum: if it still holds the archive's last entry, with the same
// hash; if it begins right after it, linking to its hash; if it begins
// later (a later archive removed more), the caller relies on the closing
// checkpoint. It returns a sentence saying which, or a *BrokenError.
func ArchiveContinues(ctx context.Context, src Source, sum ArchiveSummary) (string, error) {
	page, err := src.AuditEntries(ctx, 0, 1)
	if err != nil {
		return "", fmt.Errorf("audit: reading the first entry: %w", err)
	}
	if len(page) == 0 {
		return "", archiveBroken(sum.Last+1, KindRemoved, "the live log is empty; it must continue after the archive's entry %d", sum.Last)
	}
	first := page[0]
	switch {
	case first.Seq <= sum.Last:
		at, err := src.AuditEntries(ctx, sum.Last-1, 1)
		if err != nil {
			return "", fmt.Errorf("audit: reading entry %d: %w", sum.Last, err)
		}
		if len(at) == 0 || at[0].Seq != sum.Last {
			return "", archiveBroken(sum.Last, KindRemoved, "the live log holds entries from %d but not the archive's last entry %d", first.Seq, sum.Last)
		}
		if !bytes.Equal(at[0].Hash, sum.LastHash) {
			return "", archiveBroken(sum.Last, KindAltered, "the live log's entry %d hashes to %s, the archive's to %s", sum.Last, short(at[0].Hash), short(sum.LastHash))
		}
		return fmt.Sprintf("the live log still holds entry %d with the same hash (these entries were not removed)", sum.Last), nil
	case first.Seq == sum.Last+1:
		if !bytes.Equal(first.PrevHash, sum.LastHash) {
			return "", archiveBroken(first.Seq, KindAltered, "the live log's first entry %d links to %s, not to the archive's last entry %d hash %s",
				first.Seq, short(first.PrevHash), sum.Last, short(sum.LastHash))
		}
		return fmt.Sprintf("the live log continues from it at entry %d", first.Seq), nil
	default:
		return fmt.Sprintf("the live log begins at entry %d: entries %d to %d are in a later archive", first.Seq, sum.Last+1, first.Seq-1), nil
	}
}
