package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/postgres"
)

var gt0 = time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)

func groupStore(t *testing.T) (*postgres.Store, string) {
	t.Helper()
	url := testkit.PostgresURL(t)
	s, err := postgres.Open(context.Background(), url)
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
	return s, url
}

func groupLeaf(issuerID string) (store.Certificate, store.AuditEntry) {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	b[0] = 0x40
	serial := hex.EncodeToString(b)
	c := store.Certificate{Serial: serial, IssuerID: issuerID, SPIFFEID: "spiffe://example.org/g",
		NotBefore: gt0, NotAfter: gt0.Add(time.Hour), DER: []byte("der-" + serial), PublicKeySHA256: "ab",
		Status: store.CertActive, PolicyRule: "r", PolicyVersion: "v", CreatedAt: gt0}
	e := store.AuditEntry{Time: gt0, Actor: "a", Action: "issue", Target: serial, Decision: "allow"}
	return c, e
}

func groupOf(n int, issuerID string) ([]store.Certificate, []store.AuditEntry) {
	var cs []store.Certificate
	var es []store.AuditEntry
	for range n {
		c, e := groupLeaf(issuerID)
		cs, es = append(cs, c), append(es, e)
	}
	return cs, es
}

func auditCount(t *testing.T, s *postgres.Store) int {
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

func TestAGroupThatLosesItsConnectionBeforeCommitFailsEveryCallerAndRecordsNothing(t *testing.T) {
	s, url := groupStore(t)
	ctx := context.Background()
	certs, entries := groupOf(6, "root")
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	res := s.CommitGroupForTest(ctx, certs, entries, func(ctx context.Context, conn *pgx.Conn, size int) {
		var pid int
		if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Errorf("backend pid: %v", err)
			return
		}
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Errorf("terminate: %v", err)
		}
	})
	for i, r := range res {
		if !errors.Is(r.Err, store.ErrUnavailable) {
			t.Errorf("caller %d: %v; want ErrUnavailable", i, r.Err)
		}
	}
	for _, c := range certs {
		if _, err := s.GetCertificate(ctx, c.Serial); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("certificate %s of the failed group: %v; want ErrNotFound", c.Serial, err)
		}
	}
	if n := auditCount(t, s); n != 0 {
		t.Errorf("%d audit entries after a failed group, want 0", n)
	}
	// The store carries on with a fresh connection.
	c, e := groupLeaf("root")
	if _, err := s.RecordIssuance(ctx, c, e); err != nil {
		t.Fatalf("RecordIssuance after the failed group: %v", err)
	}
	if n := auditCount(t, s); n != 1 {
		t.Errorf("%d audit entries, want 1", n)
	}
}

func TestACollisionInsideAGroupFailsOnlyTheLaterCaller(t *testing.T) {
	s, _ := groupStore(t)
	ctx := context.Background()
	stored, se := groupLeaf("root")
	if _, err := s.RecordIssuance(ctx, stored, se); err != nil {
		t.Fatal(err)
	}
	certs, entries := groupOf(5, "root")
	certs[3].Serial, entries[3].Target = certs[1].Serial, certs[1].Serial // same serial twice in the group
	certs[4].Serial, entries[4].Target = stored.Serial, stored.Serial     // a serial already stored
	res := s.CommitGroupForTest(ctx, certs, entries, nil)
	for i, r := range res {
		wantConflict := i == 3 || i == 4
		if wantConflict != errors.Is(r.Err, store.ErrConflict) || !wantConflict && r.Err != nil {
			t.Errorf("caller %d: %v (want conflict: %v)", i, r.Err, wantConflict)
		}
	}
	if res[0].Entry.Seq != 2 || res[1].Entry.Seq != 3 || res[2].Entry.Seq != 4 {
		t.Errorf("winners' seqs %d %d %d, want 2 3 4 in group order", res[0].Entry.Seq, res[1].Entry.Seq, res[2].Entry.Seq)
	}
	if got, err := s.GetCertificate(ctx, certs[1].Serial); err != nil || string(got.DER) != string(certs[1].DER) {
		t.Errorf("the first caller's row was not kept: %v", err)
	}
	if n := auditCount(t, s); n != 4 {
		t.Errorf("%d audit entries, want 4", n)
	}
}

func TestAStatementFailureInAGroupGivesEachCallerItsOwnAnswer(t *testing.T) {
	s, _ := groupStore(t)
	ctx := context.Background()
	certs, entries := groupOf(4, "root")
	certs[2].IssuerID = "no-such-issuer"
	res := s.CommitGroupForTest(ctx, certs, entries, nil)
	for i, r := range res {
		if i == 2 {
			if !errors.Is(r.Err, store.ErrNotFound) {
				t.Errorf("caller with an unknown issuer: %v; want ErrNotFound", r.Err)
			}
			continue
		}
		if r.Err != nil {
			t.Errorf("caller %d: %v", i, r.Err)
		}
	}
	if n := auditCount(t, s); n != 3 {
		t.Errorf("%d audit entries, want 3", n)
	}
}

func TestRecordIssuanceAfterCloseIsUnavailable(t *testing.T) {
	s, _ := groupStore(t)
	// A mark without an expiry is refused, as the NOT NULL column refused
	// it before marks were grouped; it is never marked as already expired.
	if err := s.MarkTokenUsed(context.Background(), "iss|no-expiry", time.Time{}, time.Now()); err == nil {
		t.Fatal("MarkTokenUsed without an expiry succeeded")
	}
	_ = s.Close()
	c, e := groupLeaf("root")
	if _, err := s.RecordIssuance(context.Background(), c, e); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("RecordIssuance after Close: %v; want ErrUnavailable", err)
	}
	if err := s.MarkTokenUsed(context.Background(), "iss|after-close", time.Now().Add(time.Hour), time.Now()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("MarkTokenUsed after Close: %v; want ErrUnavailable", err)
	}
}
