package sqlite_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
)

var gt0 = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)

func groupStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, _ := groupStoreAt(t)
	return s
}

// groupStoreAt is groupStore with the database file's path.
func groupStoreAt(t *testing.T) (*sqlite.Store, string) {
	t.Helper()
	path := strings.TrimPrefix(testkit.SQLiteURL(t), "sqlite:")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	root := store.Issuer{ID: "root", Kind: store.KindRoot, KeyURI: "software:root", CertDER: []byte("root"),
		SubjectKeyID: []byte{1}, NotBefore: gt0, NotAfter: gt0.Add(24 * time.Hour), State: store.IssuerActive,
		CreatedAt: gt0, UpdatedAt: gt0}
	if err := s.InsertIssuer(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	return s, path
}

func groupLeaf(issuerID string) sqlite.GroupWrite {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	b[0] = 0x40
	serial := hex.EncodeToString(b)
	return sqlite.GroupWrite{
		Cert: store.Certificate{Serial: serial, IssuerID: issuerID, SPIFFEID: "spiffe://example.org/g",
			NotBefore: gt0, NotAfter: gt0.Add(time.Hour), DER: []byte("der-" + serial), PublicKeySHA256: "ab",
			Status: store.CertActive, PolicyRule: "r", PolicyVersion: "v", CreatedAt: gt0},
		Entry: store.AuditEntry{Time: gt0, Actor: "a", Action: "issue", Target: serial, Decision: "allow"},
	}
}

// auditChain checks the chain and returns its length.
func auditChain(t *testing.T, s *sqlite.Store) int {
	t.Helper()
	entries, err := s.AuditEntries(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var prev []byte
	for i, e := range entries {
		if e.Seq != int64(i+1) || string(e.PrevHash) != string(prev) || string(store.AuditHash(prev, e)) != string(e.Hash) {
			t.Fatalf("audit chain broken at entry %d", e.Seq)
		}
		prev = e.Hash
	}
	return len(entries)
}

func TestAFailedWriteInsideAGroupFailsOnlyItsCaller(t *testing.T) {
	s := groupStore(t)
	ctx := context.Background()
	stored := groupLeaf("root")
	if _, err := s.RecordIssuance(ctx, stored.Cert, stored.Entry); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkTokenUsed(ctx, "iss|used", gt0.Add(time.Hour), gt0); err != nil {
		t.Fatal(err)
	}
	w := []sqlite.GroupWrite{groupLeaf("root"), groupLeaf("root"), groupLeaf("root"), groupLeaf("root"), groupLeaf("no-such-issuer"),
		{Token: "iss|fresh", Exp: gt0.Add(2 * time.Hour), Now: gt0}, {Token: "iss|used", Exp: gt0.Add(2 * time.Hour), Now: gt0}, groupLeaf("root")}
	w[3].Cert.Serial, w[3].Entry.Target = w[1].Cert.Serial, w[1].Cert.Serial // the same serial twice in the group
	w[7].Cert.Serial, w[7].Entry.Target = stored.Cert.Serial, stored.Cert.Serial
	entries, errs := s.CommitGroupForTest(ctx, w)
	want := map[int]error{3: store.ErrConflict, 4: store.ErrNotFound, 6: store.ErrConflict, 7: store.ErrConflict}
	for i, err := range errs {
		if we, bad := want[i]; bad {
			if !errors.Is(err, we) {
				t.Errorf("write %d: %v; want %v", i, err, we)
			}
			continue
		}
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if entries[0].Seq != 2 || entries[1].Seq != 3 || entries[2].Seq != 4 {
		t.Errorf("the audit entries of the group are seqs %d %d %d; want 2 3 4 in group order", entries[0].Seq, entries[1].Seq, entries[2].Seq)
	}
	if got, err := s.GetCertificate(ctx, w[1].Cert.Serial); err != nil || string(got.DER) != string(w[1].Cert.DER) {
		t.Errorf("the first writer of a serial lost its row: %v", err)
	}
	if _, err := s.GetCertificate(ctx, w[4].Cert.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the failed write left its row: %v", err)
	}
	if n := auditChain(t, s); n != 4 {
		t.Errorf("%d audit entries; want 4 (one before, three in the group)", n)
	}
	if err := s.MarkTokenUsed(ctx, "iss|fresh", gt0.Add(time.Hour), gt0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("the group's token mark was not kept: %v", err)
	}
}

func TestConcurrentWritesAreGroupedAndEachCallerGetsItsOwnAnswer(t *testing.T) {
	s := groupStore(t)
	ctx := context.Background()
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	marks := make([]error, n)
	dup := groupLeaf("root")
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := groupLeaf("root")
			if i%16 == 0 {
				w = dup // four callers race for one serial: one wins
			}
			marks[i] = s.MarkTokenUsed(ctx, "iss|same-token", gt0.Add(time.Hour), gt0) // one wins
			_, errs[i] = s.RecordIssuance(ctx, w.Cert, w.Entry)
		}()
	}
	wg.Wait()
	conflicts, wins := 0, 0
	for i := range n {
		switch {
		case errors.Is(errs[i], store.ErrConflict):
			conflicts++
		case errs[i] != nil:
			t.Errorf("caller %d: %v", i, errs[i])
		}
		if marks[i] == nil {
			wins++
		} else if !errors.Is(marks[i], store.ErrConflict) {
			t.Errorf("mark %d: %v", i, marks[i])
		}
	}
	if conflicts != 3 || wins != 1 {
		t.Errorf("%d serial conflicts and %d winning token marks; want 3 and 1", conflicts, wins)
	}
	if got := auditChain(t, s); got != n-3 {
		t.Errorf("%d audit entries; want %d", got, n-3)
	}
}

func TestWritesAfterCloseAreUnavailable(t *testing.T) {
	s := groupStore(t)
	_ = s.Close()
	w := groupLeaf("root")
	if _, err := s.RecordIssuance(context.Background(), w.Cert, w.Entry); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("RecordIssuance after Close: %v; want ErrUnavailable", err)
	}
	if err := s.MarkTokenUsed(context.Background(), "k", gt0, gt0); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("MarkTokenUsed after Close: %v; want ErrUnavailable", err)
	}
}

// A token mark is answered before its group commits (issue 20). If that
// group then fails, the mark must still be durable before any certificate
// recorded after it, and a second use of the token must be refused: the
// mark is written again first in the next group.
func TestATokenMarkAnsweredBeforeAFailedCommitIsWrittenAgainBeforeAnythingElse(t *testing.T) {
	s, path := groupStoreAt(t)
	ctx := context.Background()
	leaf := groupLeaf("root")
	_, errs := s.CommitGroupForTest(ctx, []sqlite.GroupWrite{
		{Token: "iss|early", Exp: gt0.Add(time.Hour), Now: gt0},
		{Poison: true},
		leaf,
	})
	if errs[0] != nil {
		t.Fatalf("the mark was answered %v; want nil (not used before)", errs[0])
	}
	if errs[1] == nil || errs[2] == nil {
		t.Fatalf("the poisoned group committed: %v, %v", errs[1], errs[2])
	}
	if _, err := s.GetCertificate(ctx, leaf.Cert.Serial); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the failed group left its certificate: %v", err)
	}
	// The next group: the token's second use is refused, and the
	// certificate the first use let through commits with the mark.
	if err := s.MarkTokenUsed(ctx, "iss|early", gt0.Add(time.Hour), gt0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second use of a token whose mark was answered = %v; want ErrConflict", err)
	}
	if _, err := s.RecordIssuance(ctx, leaf.Cert, leaf.Entry); err != nil {
		t.Fatal(err)
	}
	// Durable: a store opened afresh on the same file sees the mark.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := again.MarkTokenUsed(ctx, "iss|early", gt0.Add(time.Hour), gt0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("after a reopen the token's mark is gone: %v", err)
	}
	if _, err := again.GetCertificate(ctx, leaf.Cert.Serial); err != nil {
		t.Errorf("after a reopen the certificate is gone: %v", err)
	}
}
