package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// auditArchiveSuites are the tests of removing an archived audit prefix
// (store/auditarchive.go).
var auditArchiveSuites = []struct {
	name string
	run  func(t *testing.T, s store.Store)
}{
	{"an archived audit prefix is removed with its record appended in one transaction", testRemoveAuditPrefix},
	{"removing an audit prefix whose last entry changed or is gone is a conflict and changes nothing", testRemoveAuditPrefixConflict},
	{"the audit log stays append-only after a prefix was removed", testRemoveAuditPrefixKeepsAppendOnly},
}

func appendN(t *testing.T, s store.Store, n int) []store.AuditEntry {
	t.Helper()
	var out []store.AuditEntry
	for i := 0; i < n; i++ {
		e, err := s.AppendAudit(ctxT(t), auditFor("issue", "a", t0.Add(time.Duration(i)*time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func archiveRecord() store.AuditEntry {
	r := auditFor("audit_archive", "audit_log", t0.Add(time.Hour))
	r.Details = []byte(`{"through_seq":3}`)
	return r
}

func testRemoveAuditPrefix(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	in := appendN(t, s, 5)
	rec, n, err := s.RemoveAuditPrefix(ctx, 3, in[2].Hash, archiveRecord())
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("removed %d entries, want 3", n)
	}
	if rec.Seq != 6 || !bytesEq(rec.PrevHash, in[4].Hash) || !bytesEq(rec.Hash, store.AuditHash(in[4].Hash, rec)) {
		t.Errorf("the record was not appended to the chain after the head: %+v", rec)
	}
	left := allAudit(t, s)
	if len(left) != 3 || left[0].Seq != 4 || !bytesEq(left[0].PrevHash, in[2].Hash) || left[2].Seq != 6 {
		t.Fatalf("after removing through 3 the log holds %d entries from %d", len(left), left[0].Seq)
	}
	next, err := s.AppendAudit(ctx, auditFor("issue", "b", t0.Add(2*time.Hour)))
	if err != nil || next.Seq != 7 || !bytesEq(next.PrevHash, rec.Hash) {
		t.Errorf("the next append after a removal is %d (%v), want 7 linked to the record", next.Seq, err)
	}
	// A cut at the head: the record links to it and is all that is left.
	rec, n, err = s.RemoveAuditPrefix(ctx, next.Seq, next.Hash, archiveRecord())
	if err != nil {
		t.Fatal(err)
	}
	left = allAudit(t, s)
	if n != 4 || rec.Seq != 8 || !bytesEq(rec.PrevHash, next.Hash) || len(left) != 1 || left[0].Seq != 8 {
		t.Errorf("removing through the head: %d removed, record %d, %d left", n, rec.Seq, len(left))
	}
}

func testRemoveAuditPrefixConflict(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	in := appendN(t, s, 4)
	if _, _, err := s.RemoveAuditPrefix(ctx, 2, in[1].PrevHash, archiveRecord()); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a wrong hash at the cut: %v, want ErrConflict", err)
	}
	if _, _, err := s.RemoveAuditPrefix(ctx, 9, in[3].Hash, archiveRecord()); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a cut beyond the head: %v, want ErrConflict", err)
	}
	if got := allAudit(t, s); len(got) != 4 {
		t.Fatalf("refused removals changed the log: %d entries", len(got))
	}
	if _, _, err := s.RemoveAuditPrefix(ctx, 2, in[1].Hash, archiveRecord()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RemoveAuditPrefix(ctx, 2, in[1].Hash, archiveRecord()); !errors.Is(err, store.ErrConflict) {
		t.Errorf("removing an already removed cut again: %v, want ErrConflict", err)
	}
	if got := allAudit(t, s); len(got) != 3 || got[0].Seq != 3 {
		t.Errorf("after one removal and one refused: %d entries", len(got))
	}
}

func testRemoveAuditPrefixKeepsAppendOnly(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	raw, ok := s.(RawExecer)
	if !ok {
		t.Fatalf("%T does not implement storetest.RawExecer, so append-only cannot be checked", s)
	}
	in := appendN(t, s, 5)
	if _, _, err := s.RemoveAuditPrefix(ctx, 2, in[1].Hash, archiveRecord()); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"DELETE FROM audit_log WHERE seq = 3",
		"DELETE FROM audit_log",
		"UPDATE audit_log SET actor = 'mallory' WHERE seq = 4",
	} {
		if err := raw.ExecRaw(ctx, q); err == nil {
			t.Errorf("%q succeeded after a prefix removal: the archive window stayed open", q)
		}
	}
	if got := allAudit(t, s); len(got) != 4 || got[0].Seq != 3 || got[1].Actor != in[3].Actor {
		t.Errorf("the log changed: %d entries", len(got))
	}
}
