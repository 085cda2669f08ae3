package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/pkg/server"
)

// runtimeRole creates a login role for this test only (roles are cluster
// wide) and drops it, with its grants, when the test ends. It returns the
// role and dbURL with the role as user.
func runtimeRole(t *testing.T, dbURL string) (string, string) {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := "wca_runtime_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Errorf("dropping role %s: %v", role, err)
			return
		}
		defer conn.Close(ctx)
		for _, q := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return role, u.String()
}

// readyChecks reads /readyz's checks from the public listener.
func readyChecks(t *testing.T, s *servingCA) map[string]string {
	t.Helper()
	res, raw := get(t, &http.Client{Timeout: 10 * time.Second}, s.publicURL+"/readyz")
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(raw, &body); err != nil || res.StatusCode != 200 || body.Status != "ready" {
		t.Fatalf("GET /readyz = %d %s", res.StatusCode, raw)
	}
	return body.Checks
}

// TestTheRuntimeDatabaseRoleCanOnlyAppendToTheAuditLog: the migration owner
// runs `ca migrate up --grant-runtime ROLE` with the real binary; `ca serve`
// as that role (Postgres, SoftHSM) enrolls and revokes, says in /readyz that
// the audit log is append-only to it, and the role cannot DELETE or UPDATE
// audit entries, TRUNCATE the log or DISABLE its trigger. `ca serve` as the
// owner warns at start and says so in /readyz.
func TestTheRuntimeDatabaseRoleCanOnlyAppendToTheAuditLog(t *testing.T) {
	p := newPubE2E(t) // migrated and initialised by the owner (the test superuser)
	ownerURL := p.vars["CA_DATABASE_URL"]
	role, runtimeURL := runtimeRole(t, ownerURL)

	if _, errOut, code := runCA(t, p.vars, "migrate", "up", "--grant-runtime", "no_such_role_"+role); code == 0 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("granting an unknown role: exit %d %s", code, errOut)
	}
	out, errOut, code := runCA(t, p.vars, "migrate", "up", "--grant-runtime", role)
	if code != 0 || !strings.Contains(out, "runtime role") {
		t.Fatalf("ca migrate up --grant-runtime: exit %d\n%s%s", code, out, errOut)
	}

	p.vars["CA_DATABASE_URL"] = runtimeURL
	n := p.serve(t, "runtime")
	if got := readyChecks(t, n.s)["audit_log"]; got != server.AuditLogAppendOnly {
		t.Errorf("readyz checks.audit_log as the runtime role = %q, want %q", got, server.AuditLogAppendOnly)
	}
	leaf := p.enroll(t, n, "acme/payments")
	p.revoke(t, n, leaf.serial, "keyCompromise")
	if strings.Contains(n.s.stderr.String(), "can alter or delete audit entries") {
		t.Errorf("the runtime role was warned about:\n%s", n.s.stderr)
	}
	n.s.stop(t)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, runtimeURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var entries int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&entries); err != nil || entries == 0 {
		t.Fatalf("the runtime role reads %d audit entries: %v", entries, err)
	}
	for _, q := range []string{
		"DELETE FROM audit_log WHERE seq = 1",
		"UPDATE audit_log SET actor = 'nobody' WHERE seq = 1",
		"TRUNCATE audit_log",
		"ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
		"ALTER TABLE audit_log DISABLE TRIGGER ALL",
		"DROP TRIGGER audit_log_append_only ON audit_log",
		"CREATE TRIGGER sneaky BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()",
	} {
		_, err := conn.Exec(ctx, q)
		if err == nil {
			t.Errorf("the runtime role could run %q", q)
		} else if !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be owner") {
			t.Errorf("%q failed, but not for want of privilege: %v", q, err)
		}
	}
	var after int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM audit_log").Scan(&after); err != nil || after != entries {
		t.Errorf("audit entries %d after the attempts, want %d (%v)", after, entries, err)
	}

	// The owner (here a superuser) is warned about, in the log and /readyz.
	p.vars["CA_DATABASE_URL"] = ownerURL
	o := p.serve(t, "owner")
	if got := readyChecks(t, o.s)["audit_log"]; got != server.AuditLogAlterable {
		t.Errorf("readyz checks.audit_log as the owner = %q, want %q", got, server.AuditLogAlterable)
	}
	if log := o.s.stderr.String(); !strings.Contains(log, "can alter or delete audit entries") || !strings.Contains(log, "superuser") {
		t.Errorf("no start-up warning for the owner role:\n%s", log)
	}
	o.s.stop(t)
}
