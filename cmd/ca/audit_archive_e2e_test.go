package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
)

// checkArchiveRoundTrip archives and removes the whole log that one run of
// `ca serve` left, up to its shutdown checkpoint, with the real binary, and
// checks that `ca audit verify` and `ca audit verify --archive` pass, and
// that an edited or truncated archive fails. clone returns a copy of the
// database as it was before the archive, with vars for it.
func checkArchiveRoundTrip(t *testing.T, vars map[string]string, d tamperable, clone func(t *testing.T) (map[string]string, tamperable)) {
	t.Helper()
	before, beforeD := clone(t)
	entries, cps := d.auditLog(t)
	head := entries[len(entries)-1].Seq
	if cps[len(cps)-1].Seq != head {
		t.Fatalf("the last checkpoint covers %d, the head is %d", cps[len(cps)-1].Seq, head)
	}
	file := filepath.Join(t.TempDir(), "audit-1.jsonl")
	out, errOut, code := runCA(t, vars, "audit", "archive", "--before", fmt.Sprint(head), "--out", file, "--remove", "--actor", "retention-ticket-7")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("archived entries 1 to %d", head)) || !strings.Contains(out, fmt.Sprintf("removed %d entries", head)) {
		t.Fatalf("ca audit archive --remove: exit %d\n%s%s", code, out, errOut)
	}
	left, _ := d.auditLog(t)
	if len(left) != 1 || left[0].Seq != head+1 || left[0].Action != "audit_archive" || !strings.Contains(left[0].Actor, "retention-ticket-7") {
		t.Fatalf("after the archive the log holds %+v", left)
	}
	out, errOut, code = runCA(t, vars, "audit", "verify", "--ca-stopped")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("entries 1 to %d were archived and removed", head)) {
		t.Fatalf("verify after the archive: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCA(t, vars, "audit", "verify", "--ca-stopped", "--archive", file)
	if code != 0 || !strings.Contains(out, "archive "+file+" intact") || !strings.Contains(out, "continues from it") ||
		!strings.Contains(out, "records its removal with this SHA-256") {
		t.Fatalf("verify --archive: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code = runCA(t, vars, "audit", "archive", "--before", "1", "--out", file); code == 0 || !strings.Contains(errOut, "exists") {
		t.Errorf("an archive over an existing file: exit %d\n%s%s", code, out, errOut)
	}

	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(raw), "\n")
	edited := strings.Replace(string(raw), `"decision":"allow"`, `"decision":"deny"`, 1)
	for name, content := range map[string]string{
		"an edited line":             edited,
		"a truncated archive":        strings.Join(lines[:len(lines)-2], ""),
		"the last line cut mid-line": string(raw[:len(raw)-30]),
	} {
		bad := filepath.Join(t.TempDir(), "bad.jsonl")
		if content == string(raw) {
			t.Fatalf("%s: the edit changed nothing", name)
		}
		if err := os.WriteFile(bad, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runCA(t, vars, "audit", "verify", "--ca-stopped", "--archive", bad)
		if code != 1 || !strings.Contains(out, "archive "+bad+" BROKEN") {
			t.Errorf("%s: verify --archive exit %d\n%s%s", name, code, out, errOut)
		}
	}

	// Tampering: the same prefix removed without an archive.
	cut := head - 1
	for covered := true; covered && cut > 0; {
		covered = false
		for _, c := range cps {
			if c.Seq == cut {
				covered, cut = true, cut-1
				break
			}
		}
	}
	if cut < 1 {
		t.Fatal("every entry has a checkpoint: nothing to remove without one")
	}
	beforeD.exec(t, "DELETE FROM audit_log WHERE seq <= $1", cut)
	out, errOut, code = runCA(t, before, "audit", "verify", "--ca-stopped")
	if code != 1 || !strings.Contains(out, "(removed)") || !strings.Contains(out, "without an archive") {
		t.Fatalf("verify after removing entries without an archive: exit %d\n%s%s", code, out, errOut)
	}
}

func TestAuditArchiveRemoveAndVerifyOnSQLite(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	vars := map[string]string{"CA_DATA_DIR": dataDir}
	s := startServe(t, vars)
	s.stop(t)
	db := filepath.Join(dataDir, "ca.db")
	checkArchiveRoundTrip(t, vars, sqliteTamperable(db), func(t *testing.T) (map[string]string, tamperable) {
		path := filepath.Join(t.TempDir(), "clone.db")
		copyFile(t, db, path)
		return map[string]string{"CA_DATA_DIR": dataDir, "CA_DATABASE_URL": "sqlite:" + path}, sqliteTamperable(path)
	})
}

// TestAuditArchiveOnPostgresNeedsTheMigrationOwner: as the runtime role
// `ca audit archive --remove` writes the archive but removes nothing (the
// role has no DELETE on audit_log); as the owner it removes, and verify
// passes.
func TestAuditArchiveOnPostgresNeedsTheMigrationOwner(t *testing.T) {
	dbURL := testkit.PostgresURL(t)
	token := testkit.SoftHSM(t)
	vars := map[string]string{
		"CA_DATABASE_URL":  dbURL,
		"CA_PKCS11_MODULE": token.Module,
		"CA_PKCS11_TOKEN":  token.TokenLabel,
		"CA_PKCS11_PIN":    token.PIN,
		"CA_TRUST_DOMAIN":  "prod.example",
	}
	if out, errOut, code := runCA(t, vars, "init"); code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	s := startServe(t, vars)
	s.stop(t)
	d := postgresTamperable(dbURL)
	entries, _ := d.auditLog(t)

	role, runtimeURL := runtimeRole(t, dbURL)
	if out, errOut, code := runCA(t, vars, "migrate", "up", "--grant-runtime", role); code != 0 {
		t.Fatalf("grant runtime: exit %d\n%s%s", code, out, errOut)
	}
	rt := map[string]string{}
	for k, v := range vars {
		rt[k] = v
	}
	rt["CA_DATABASE_URL"] = runtimeURL
	file := filepath.Join(t.TempDir(), "runtime.jsonl")
	out, errOut, code := runCA(t, rt, "audit", "archive", "--before", fmt.Sprint(entries[len(entries)-1].Seq), "--out", file, "--remove")
	if code == 0 || !strings.Contains(errOut, "nothing was removed") {
		t.Fatalf("archive --remove as the runtime role: exit %d\n%s%s", code, out, errOut)
	}
	if after, _ := d.auditLog(t); len(after) != len(entries) {
		t.Fatalf("the runtime role removed entries: %d left of %d", len(after), len(entries))
	}
	// Nor by hand with the archive window setting.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, runtimeURL)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('workload_ca.audit_archive_through', '1000000', true)"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM audit_log WHERE seq = 1"); err == nil {
		t.Error("the runtime role deleted an audit entry with the archive window set")
	}
	_ = tx.Rollback(ctx)
	conn.Close(ctx)

	checkArchiveRoundTrip(t, vars, d, func(t *testing.T) (map[string]string, tamperable) {
		u := clonePostgres(t, dbURL)
		v := map[string]string{}
		for k, val := range vars {
			v[k] = val
		}
		v["CA_DATABASE_URL"] = u
		return v, postgresTamperable(u)
	})
}
