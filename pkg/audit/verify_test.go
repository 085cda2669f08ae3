package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// tamperer runs raw SQL with the append-only triggers out of the way.
type tamperer func(t *testing.T, stmts ...string)

func postgresBackend(t *testing.T) (store.Store, tamperer) {
	url := testkit.PostgresURL(t)
	ctx := context.Background()
	st, err := storeopen.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, func(t *testing.T, stmts ...string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		all := append([]string{"ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"}, stmts...)
		for _, s := range append(all, "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only") {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
}

func sqliteBackend(t *testing.T) (store.Store, tamperer) {
	url := testkit.SQLiteURL(t)
	st, err := storeopen.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	path := strings.TrimPrefix(url, "sqlite:")
	return st, func(t *testing.T, stmts ...string) {
		t.Helper()
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		// SQLite cannot disable a trigger; the tamperer drops them.
		all := append([]string{"DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete"}, stmts...)
		for _, s := range all {
			if _, err := db.Exec(s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
}

// appendEntries appends n decisions and returns the head.
func appendEntries(t *testing.T, st store.Store, n int) store.AuditEntry {
	t.Helper()
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var last store.AuditEntry
	actions := []string{"issue", "enroll", "renew", "revoke", "authz"}
	for i := range n {
		e := store.AuditEntry{
			Time: at.Add(time.Duration(i) * time.Second), Actor: fmt.Sprintf("repo:acme/app-%d", i),
			Action: actions[i%len(actions)], Target: fmt.Sprintf("%x", 1000+i), Decision: "allow",
			PolicyVersion: "v1", RequestID: fmt.Sprintf("req-%d", i), Details: []byte(`{"rule":"ci"}`),
		}
		if i%3 == 1 {
			e.Decision, e.Reason = "deny", "policy_denied"
		}
		var err error
		if last, err = st.AppendAudit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	return last
}

func TestVerifyNamesTheFirstTamperedEntry(t *testing.T) {
	backends := []struct {
		name string
		open func(t *testing.T) (store.Store, tamperer)
	}{
		{"postgres", postgresBackend},
		{"sqlite", sqliteBackend},
	}
	tests := []struct {
		name       string
		stmts      []string
		anchor     bool
		wantSeq    int64
		wantKind   audit.Kind
		wantDetail string
	}{
		{name: "an intact log verifies"},
		{name: "an entry whose actor was changed is altered",
			stmts: []string{"UPDATE audit_log SET actor = 'someone-else' WHERE seq = 7"}, wantSeq: 7, wantKind: audit.KindAltered},
		{name: "an entry whose decision was flipped is altered",
			stmts: []string{"UPDATE audit_log SET decision = 'allow', reason = '' WHERE seq = 5"}, wantSeq: 5, wantKind: audit.KindAltered},
		{name: "an entry whose hash was recomputed breaks the next link",
			stmts: []string{"UPDATE audit_log SET hash = (SELECT hash FROM audit_log WHERE seq = 2) WHERE seq = 9"}, wantSeq: 9, wantKind: audit.KindAltered},
		{name: "a deleted entry in the middle is removed",
			stmts: []string{"DELETE FROM audit_log WHERE seq = 11"}, wantSeq: 11, wantKind: audit.KindRemoved},
		{name: "several deleted entries name the first",
			stmts: []string{"DELETE FROM audit_log WHERE seq IN (3, 4, 5)"}, wantSeq: 3, wantKind: audit.KindRemoved, wantDetail: "entries 3 to 5 are missing"},
		{name: "the deleted first entry is removed",
			stmts: []string{"DELETE FROM audit_log WHERE seq = 1"}, wantSeq: 1, wantKind: audit.KindRemoved},
		{name: "two swapped entries are reordered",
			stmts: []string{
				"UPDATE audit_log SET seq = 100000 WHERE seq = 6",
				"UPDATE audit_log SET seq = 6 WHERE seq = 8",
				"UPDATE audit_log SET seq = 8 WHERE seq = 100000",
			}, wantSeq: 6, wantKind: audit.KindReordered, wantDetail: "appended as 8"},
		{name: "entries deleted at the end are caught against an anchor",
			stmts: []string{"DELETE FROM audit_log WHERE seq >= 19"}, anchor: true, wantSeq: 19, wantKind: audit.KindRemoved},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					st, tamper := b.open(t)
					head := appendEntries(t, st, 20)
					if len(tt.stmts) > 0 {
						tamper(t, tt.stmts...)
					}
					opts := audit.Options{PageSize: 4}
					if tt.anchor {
						opts.Anchor = audit.Anchor{Seq: head.Seq, Hash: head.Hash}
					}
					rep, err := audit.Verify(context.Background(), st, opts)
					if tt.wantKind == "" {
						if err != nil || rep.Entries != 20 || rep.Head.Seq != 20 {
							t.Fatalf("intact log: %+v %v", rep, err)
						}
						return
					}
					var be *audit.BrokenError
					if !errors.As(err, &be) || !errors.Is(err, audit.ErrBroken) {
						t.Fatalf("want a broken chain, got %+v %v", rep, err)
					}
					if be.Finding.Seq != tt.wantSeq || be.Finding.Kind != tt.wantKind || !strings.Contains(be.Finding.Detail, tt.wantDetail) {
						t.Errorf("finding %+v, want entry %d %s (%q)", be.Finding, tt.wantSeq, tt.wantKind, tt.wantDetail)
					}
					if rep.Entries != tt.wantSeq-1 {
						t.Errorf("%d entries checked before the break, want %d", rep.Entries, tt.wantSeq-1)
					}
				})
			}
		})
	}
}

func TestTheAppendOnlyTriggersRefuseTamperingWithoutPrivileges(t *testing.T) {
	url := testkit.PostgresURL(t)
	ctx := context.Background()
	st, err := storeopen.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	appendEntries(t, st, 2)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE audit_log SET actor = 'x' WHERE seq = 1"); err == nil {
		t.Fatal("the trigger let an UPDATE through")
	}
	if _, err := audit.Verify(ctx, st, audit.Options{}); err != nil {
		t.Fatalf("refused update still broke the chain: %v", err)
	}
}

// failingSource fails on its second page.
type failingSource struct {
	st    store.Store
	calls int
}

var errDown = errors.New("database down")

func (f *failingSource) AuditEntries(ctx context.Context, after int64, limit int) ([]store.AuditEntry, error) {
	f.calls++
	if f.calls > 1 {
		return nil, errDown
	}
	return f.st.AuditEntries(ctx, after, limit)
}

func TestASourceErrorIsNotABrokenChain(t *testing.T) {
	st := testkit.SQLite(t)
	appendEntries(t, st, 5)
	_, err := audit.Verify(context.Background(), &failingSource{st: st}, audit.Options{PageSize: 2})
	if !errors.Is(err, errDown) || errors.Is(err, audit.ErrBroken) {
		t.Fatalf("err = %v", err)
	}
}
