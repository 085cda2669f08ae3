package audit_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// archived is a log of 30 entries with checkpoints over 10, 20 and 30,
// archived through 20 and removed.
type archived struct {
	st     store.Store
	tamper func(t *testing.T, stmts ...string)
	blob   func([]byte) string
	key    crypto.PublicKey
	file   []byte
	sum    audit.ArchiveSummary
	rec    audit.ArchiveRecord
}

func archiveFixture(t *testing.T, b checkpointBackend) (*archived, *audit.Checkpointer, func() []byte) {
	t.Helper()
	ctx := context.Background()
	st, tamper := b.open(t)
	key := ecKey(t)
	clk := clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	var logs bytes.Buffer
	cp := newCheckpointer(t, st, key, clk, &logs)
	for i := 0; i < 3; i++ {
		if i == 0 {
			appendEntries(t, st, 10)
		} else {
			appendMore(t, st, 10)
		}
		clk.Advance(30 * time.Second)
		if _, err := cp.Write(ctx, store.CheckpointPeriodic); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := audit.PlanArchive(ctx, st, key.Public(), 25, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if plan.First != 1 || plan.Closing.Seq != 20 {
		t.Fatalf("plan through 25: entries %d to %d, want 1 to 20 (the checkpoint at or before 25)", plan.First, plan.Closing.Seq)
	}
	var buf bytes.Buffer
	sum, err := audit.WriteArchive(ctx, st, &buf, plan.First, plan.Closing, plan.Checkpoints, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec, e, n, err := audit.RemoveArchived(ctx, st, sum, "a.jsonl", "ops", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n != 20 || e.Seq != 31 || rec.Seq != 31 || rec.ThroughSeq != 20 {
		t.Fatalf("removed %d, record %+v at %d", n, rec, e.Seq)
	}
	return &archived{st: st, tamper: tamper, blob: b.blob, key: key.Public(), file: buf.Bytes(), sum: sum, rec: rec}, cp, func() []byte { return logs.Bytes() }
}

func TestAnArchivedAndRemovedPrefixVerifiesAndTheArchiveToo(t *testing.T) {
	for _, b := range checkpointBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			a, cp, _ := archiveFixture(t, b)
			key := a.key
			rep, _, err := audit.VerifySigned(ctx, a.st, audit.Options{}, key)
			if err != nil {
				t.Fatalf("verify after archiving through 20: %v", err)
			}
			if rep.First != 21 || rep.Entries != 11 || rep.Archive.Seq != 31 || rep.Archive.ThroughSeq != 20 {
				t.Errorf("report: first %d, %d entries, archive %+v", rep.First, rep.Entries, rep.Archive)
			}
			// The checkpointer keeps signing over the archived log.
			if _, err := cp.Write(ctx, store.CheckpointPeriodic); err != nil {
				t.Fatalf("a checkpoint after the archive: %v", err)
			}
			cps, err := audit.LoadCheckpoints(ctx, a.st, 0)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := audit.VerifyArchive(bytes.NewReader(a.file), key, cps)
			if err != nil {
				t.Fatalf("verify the archive: %v", err)
			}
			if sum.First != 1 || sum.Last != 20 || sum.Entries != 20 || sum.Closing.Seq != 20 || !bytes.Equal(sum.SHA256, a.sum.SHA256) {
				t.Errorf("archive summary %+v", sum)
			}
			note, err := audit.ArchiveContinues(ctx, a.st, sum)
			if err != nil || !strings.Contains(note, "continues from it at entry 21") {
				t.Errorf("the live log continues: %q %v", note, err)
			}
			if r, ok := rep.ArchiveRecordFor(sum); !ok || r.ArchiveSHA256 != fmt.Sprintf("%x", sum.SHA256) {
				t.Errorf("the record of this archive: %+v %v", r, ok)
			}

			// A second archive of what is left links to the first.
			plan, err := audit.PlanArchive(ctx, a.st, key, 1000, time.Time{})
			if err != nil || plan.First != 21 || plan.Closing.Seq != 31 {
				t.Fatalf("second plan: %+v %v", plan, err)
			}
			var buf bytes.Buffer
			sum2, err := audit.WriteArchive(ctx, a.st, &buf, plan.First, plan.Closing, plan.Checkpoints, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := audit.RemoveArchived(ctx, a.st, sum2, "b.jsonl", "ops", time.Now()); err != nil {
				t.Fatal(err)
			}
			if _, _, err := audit.VerifySigned(ctx, a.st, audit.Options{}, key); err != nil {
				t.Fatalf("verify after the second archive: %v", err)
			}
			// The second archive removed the entry of the checkpointer's own
			// last and the latest stored checkpoint: it still signs.
			if _, err := cp.Write(ctx, store.CheckpointPeriodic); err != nil {
				t.Fatalf("a checkpoint after archiving through the latest one: %v", err)
			}
			if _, err := audit.VerifyArchive(bytes.NewReader(buf.Bytes()), key, nil); err != nil {
				t.Errorf("the second archive on its own: %v", err)
			}
			if note, err := audit.ArchiveContinues(ctx, a.st, sum); err != nil || !strings.Contains(note, "later archive") {
				t.Errorf("the first archive after the second removal: %q %v", note, err)
			}
		})
	}
}

func TestRemovingEntriesWithoutAnArchiveFailsVerify(t *testing.T) {
	for _, b := range checkpointBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			tests := []struct {
				name   string
				stmts  func(a *archived) []string
				detail string
			}{
				{"a prefix removed where no checkpoint is", func(*archived) []string {
					return []string{"DELETE FROM audit_log WHERE seq <= 25"}
				}, "no signed checkpoint covers entry 25"},
				{"a prefix removed up to a checkpoint but with no audit_archive entry", func(*archived) []string {
					return []string{"DELETE FROM audit_log WHERE seq <= 30"}
				}, "no audit_archive entry"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					a, cp, _ := archiveFixture(t, b)
					if _, err := cp.Write(ctx, store.CheckpointPeriodic); err != nil {
						t.Fatal(err)
					}
					a.tamper(t, tt.stmts(a)...)
					_, _, err := audit.VerifySigned(ctx, a.st, audit.Options{}, a.key)
					var broken *audit.BrokenError
					if !errors.As(err, &broken) || broken.Finding.Kind != audit.KindRemoved || !strings.Contains(broken.Finding.Detail, tt.detail) {
						t.Fatalf("verify: %v, want removed: %q", err, tt.detail)
					}
				})
			}
		})
	}
}

func TestAnEditedOrTruncatedArchiveFails(t *testing.T) {
	b := checkpointBackends()[1] // the archive checks do not depend on the store
	a, _, _ := archiveFixture(t, b)
	key := a.key
	lines := strings.SplitAfter(string(a.file), "\n")
	entryLine := func(seq int) int {
		for i, l := range lines {
			if strings.Contains(l, `"type":"entry","seq":`+fmt.Sprint(seq)+`,`) {
				return i
			}
		}
		t.Fatalf("no line for entry %d", seq)
		return 0
	}
	tests := []struct {
		name string
		edit func() string
		kind audit.Kind
	}{
		{"an edited actor", func() string {
			l := slicesClone(lines)
			i := entryLine(7)
			l[i] = strings.Replace(l[i], `"actor":"`, `"actor":"x`, 1)
			return strings.Join(l, "")
		}, audit.KindAltered},
		{"a removed entry line", func() string {
			l := slicesClone(lines)
			i := entryLine(7)
			return strings.Join(append(l[:i], l[i+1:]...), "")
		}, audit.KindRemoved},
		{"the last entry lines cut off", func() string {
			return strings.Join(lines[:entryLine(18)], "")
		}, audit.KindRemoved},
		{"cut in the middle of a line", func() string {
			s := string(a.file)
			return s[:len(s)-40]
		}, audit.KindAltered},
		{"a checkpoint signature changed", func() string {
			l := slicesClone(lines)
			l[1] = strings.Replace(l[1], `"signature":"M`, `"signature":"N`, 1)
			return strings.Join(l, "")
		}, audit.KindCheckpointInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edited := tt.edit()
			if edited == string(a.file) {
				t.Fatal("the edit changed nothing")
			}
			_, err := audit.VerifyArchive(strings.NewReader(edited), key, nil)
			var broken *audit.BrokenError
			if !errors.As(err, &broken) || broken.Finding.Kind != tt.kind {
				t.Fatalf("VerifyArchive: %v, want %s", err, tt.kind)
			}
		})
	}
}

func TestArchivingRefusesWhatNoCheckpointClosesAndEntriesYoungerThanRetention(t *testing.T) {
	b := checkpointBackends()[1]
	ctx := context.Background()
	st, _ := b.open(t)
	key := ecKey(t)
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	cp := newCheckpointer(t, st, key, clk, &bytes.Buffer{})
	appendEntries(t, st, 10)
	if _, err := audit.PlanArchive(ctx, st, key.Public(), 10, time.Time{}); !errors.Is(err, audit.ErrNothingToArchive) {
		t.Errorf("plan without checkpoints: %v", err)
	}
	if _, err := cp.Write(ctx, store.CheckpointPeriodic); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.PlanArchive(ctx, st, key.Public(), 5, time.Time{}); !errors.Is(err, audit.ErrNothingToArchive) {
		t.Errorf("plan through 5 with a checkpoint at 10 only: %v", err)
	}
	if _, err := audit.PlanArchive(ctx, st, key.Public(), 0, start.Add(-time.Hour)); !errors.Is(err, audit.ErrNothingToArchive) {
		t.Errorf("plan of entries older than all: %v", err)
	}
	plan, err := audit.PlanArchive(ctx, st, key.Public(), 0, start.Add(24*time.Hour))
	if err != nil || plan.Closing.Seq != 10 {
		t.Fatalf("plan by time: %+v %v", plan.Closing, err)
	}
	var buf bytes.Buffer
	sum, err := audit.WriteArchive(ctx, st, &buf, plan.First, plan.Closing, plan.Checkpoints, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.CheckRetention(sum, 90*24*time.Hour, sum.LastTime.Add(89*24*time.Hour)); !errors.Is(err, audit.ErrTooYoung) {
		t.Errorf("retention 90 days, entries 89 days old: %v", err)
	}
	if err := audit.CheckRetention(sum, 90*24*time.Hour, sum.LastTime.Add(91*24*time.Hour)); err != nil {
		t.Errorf("retention 90 days, entries 91 days old: %v", err)
	}
	if err := audit.CheckRetention(sum, 0, sum.LastTime); err != nil {
		t.Errorf("no retention: %v", err)
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
