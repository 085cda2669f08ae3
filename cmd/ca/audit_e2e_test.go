package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// TestAuditVerifyCatchesATamperedPostgresLog runs the real `ca audit verify`
// against Postgres before and after the audit log is changed behind the CA's
// back (triggers disabled, as a superuser would).
func TestAuditVerifyCatchesATamperedPostgresLog(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	ctx := context.Background()
	st, err := storeopen.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	for i := range 12 {
		if _, err := st.AppendAudit(ctx, store.AuditEntry{Time: at, Actor: fmt.Sprintf("op-%d", i), Action: "revoke",
			Target: fmt.Sprintf("%x", i+100), Decision: "allow", RequestID: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	vars := map[string]string{"CA_DATABASE_URL": dbURL}

	out, errOut, code := runCA(t, vars, "audit", "verify", "--page-size", "5")
	if code != 0 || !strings.Contains(out, "audit log intact: 12 entries verified") {
		t.Fatalf("intact log: exit %d\n%s%s", code, out, errOut)
	}
	head := regexp.MustCompile(`head (12:[0-9a-f]{64})`).FindStringSubmatch(out)
	if head == nil {
		t.Fatalf("no head printed:\n%s", out)
	}

	tamper := func(stmts ...string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, s := range append([]string{"ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"}, stmts...) {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	}
	tamper("DELETE FROM audit_log WHERE seq = 12")
	if out, _, code := runCA(t, vars, "audit", "verify", "--anchor", head[1]); code != 1 || !strings.Contains(out, "BROKEN at entry 12 (removed)") {
		t.Fatalf("truncated log against the anchor: exit %d\n%s", code, out)
	}
	tamper("UPDATE audit_log SET target = 'ffff' WHERE seq = 4")
	out, errOut, code = runCA(t, vars, "audit", "verify")
	if code != 1 || !strings.Contains(out, "BROKEN at entry 4 (altered)") || !strings.Contains(out, "3 entries before it verify") {
		t.Fatalf("altered log: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, code := runCA(t, vars, "audit", "verify", "--anchor", "nonsense"); code != 2 {
		t.Fatalf("bad anchor: exit %d %s", code, out)
	}
}
