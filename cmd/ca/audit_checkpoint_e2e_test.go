package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// tamperable is a database the test changes behind the CA's back, as
// someone with write access (but no key) can: exec runs one statement with
// the append-only triggers out of the way; $N placeholders; times as t().
type tamperable struct {
	url  string
	exec func(t *testing.T, q string, args ...any)
	t    func(time.Time) any
}

func postgresTamperable(dbURL string) tamperable {
	return tamperable{url: dbURL, t: func(at time.Time) any { return at }, exec: func(t *testing.T, q string, args ...any) {
		t.Helper()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, s := range []string{"ALTER TABLE audit_log DISABLE TRIGGER USER", "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"} {
			if _, err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}}
}

func sqliteTamperable(path string) tamperable {
	return tamperable{url: "sqlite:" + path, t: func(at time.Time) any { return at.UnixMicro() }, exec: func(t *testing.T, q string, args ...any) {
		t.Helper()
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, s := range []string{"DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete",
			"DROP TRIGGER IF EXISTS audit_checkpoints_no_update", "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete"} {
			if _, err := db.Exec(s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		if _, err := db.Exec(strings.ReplaceAll(q, "$", "?"), args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}}
}

// auditLog reads the whole log and the checkpoints through a read-only store.
func (d tamperable) auditLog(t *testing.T) ([]store.AuditEntry, []store.AuditCheckpoint) {
	t.Helper()
	ctx := context.Background()
	st, err := storeopen.OpenReadOnly(ctx, d.url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries, err := st.AuditEntries(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := st.AuditCheckpoints(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return entries, cps
}

// tamperScenario is one way of rewriting history and what verify must say.
type tamperScenario struct {
	name   string
	tamper func(t *testing.T, d tamperable)
	want   []string
}

var tamperScenarios = []tamperScenario{
	{"truncating the tail is caught by the checkpoint over it", func(t *testing.T, d tamperable) {
		entries, _ := d.auditLog(t)
		d.exec(t, "DELETE FROM audit_log WHERE seq > $1", entries[len(entries)-1].Seq-2)
	}, []string{"(removed)", "checkpoint"}},
	{"rewriting an entry and recomputing the whole chain is caught at the checkpoint", func(t *testing.T, d tamperable) {
		entries, _ := d.auditLog(t)
		var prev []byte
		for _, e := range entries {
			if e.Seq == 2 {
				e.Actor = "mallory"
			}
			if e.Seq >= 2 {
				e.PrevHash = prev
				e.Hash = store.AuditHash(prev, e)
				d.exec(t, "UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4", e.Actor, e.PrevHash, e.Hash, e.Seq)
			}
			prev = e.Hash
		}
	}, []string{"(altered)", "checkpoint"}},
	{"a forged checkpoint row is invalid", func(t *testing.T, d tamperable) {
		entries, cps := d.auditLog(t)
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		head := entries[len(entries)-1]
		c, err := audit.SignCheckpoint(other, store.AuditCheckpoint{Seq: head.Seq, Hash: head.Hash, Time: time.Now(), Kind: store.CheckpointPeriodic})
		if err != nil {
			t.Fatal(err)
		}
		d.exec(t, "INSERT INTO audit_checkpoints (seq, hash, time, kind, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)",
			c.Seq, c.Hash, d.t(c.Time), string(c.Kind), cps[0].KeyID, c.Signature)
	}, []string{"(checkpoint invalid)"}},
	{"removing the tail together with every checkpoint leaves checkpoints missing", func(t *testing.T, d tamperable) {
		entries, _ := d.auditLog(t)
		d.exec(t, "DELETE FROM audit_log WHERE seq > $1", entries[len(entries)-1].Seq-2)
		d.exec(t, "DELETE FROM audit_checkpoints")
	}, []string{"(checkpoints missing)", "no signed checkpoint"}},
}

// checkSignedRun checks what one graceful run of `ca serve` left: a startup
// and a shutdown checkpoint, logged, that `ca audit verify` accepts with the
// key from the key store and with the key pinned from `ca audit
// checkpoint-key`.
func checkSignedRun(t *testing.T, s *servingCA, vars, pinVars map[string]string, d tamperable) {
	t.Helper()
	if n := strings.Count(s.stderr.String(), `"msg":"audit checkpoint signed"`); n < 2 {
		t.Errorf("%d checkpoints logged, want the startup and the shutdown one:\n%s", n, s.stderr)
	}
	entries, cps := d.auditLog(t)
	if len(entries) < 3 || len(cps) < 2 || cps[0].Kind != store.CheckpointStartup || cps[len(cps)-1].Kind != store.CheckpointShutdown ||
		cps[len(cps)-1].Seq != entries[len(entries)-1].Seq {
		t.Fatalf("after one run: %d entries, checkpoints %+v", len(entries), cps)
	}
	out, errOut, code := runCA(t, vars, "audit", "verify")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("audit log intact: %d entries verified", len(entries))) ||
		!strings.Contains(out, fmt.Sprintf("%d signed checkpoints verified with the checkpoint key from the key store", len(cps))) {
		t.Fatalf("verify after a clean run: exit %d\n%s%s", code, out, errOut)
	}
	keyPEM, errOut, code := runCA(t, vars, "audit", "checkpoint-key")
	if code != 0 || !strings.HasPrefix(keyPEM, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("checkpoint-key: exit %d\n%s%s", code, keyPEM, errOut)
	}
	pinned := filepath.Join(t.TempDir(), "checkpoint.pem")
	if err := os.WriteFile(pinned, []byte(keyPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCA(t, pinVars, "audit", "verify", "--checkpoint-key", pinned)
	if code != 0 || !strings.Contains(out, "pinned in "+pinned) {
		t.Fatalf("verify with the pinned key and no key store: exit %d\n%s%s", code, out, errOut)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pinned, []byte(publicPEM(t, &other.PublicKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code = runCA(t, pinVars, "audit", "verify", "--checkpoint-key", pinned)
	if code != 1 || !strings.Contains(out, "(checkpoint invalid)") {
		t.Fatalf("verify with another pinned key: exit %d\n%s", code, out)
	}
}

func publicPEM(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func runTamperScenarios(t *testing.T, clone func(t *testing.T) (map[string]string, tamperable)) {
	for _, sc := range tamperScenarios {
		t.Run(sc.name, func(t *testing.T) {
			vars, d := clone(t)
			sc.tamper(t, d)
			out, errOut, code := runCA(t, vars, "audit", "verify")
			if code != 1 || !strings.Contains(out, "audit log BROKEN") {
				t.Fatalf("exit %d, want 1 and BROKEN:\n%s%s", code, out, errOut)
			}
			for _, w := range sc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestAuditCheckpointsCatchTamperingOnPostgresAndSoftHSM(t *testing.T) {
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
	// No key store: only the pinned key is trusted.
	pinVars := map[string]string{"CA_DATABASE_URL": dbURL, "CA_DATA_DIR": filepath.Join(t.TempDir(), "no-keys")}
	checkSignedRun(t, s, vars, pinVars, postgresTamperable(dbURL))

	runTamperScenarios(t, func(t *testing.T) (map[string]string, tamperable) {
		u := clonePostgres(t, dbURL)
		v := map[string]string{}
		for k, val := range vars {
			v[k] = val
		}
		v["CA_DATABASE_URL"] = u
		return v, postgresTamperable(u)
	})
}

func TestAuditCheckpointsCatchTamperingOnSQLiteAndSoftwareKeys(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	vars := map[string]string{"CA_DATA_DIR": dataDir}
	s := startServe(t, vars)
	s.stop(t)
	pinVars := map[string]string{"CA_DATA_DIR": filepath.Join(t.TempDir(), "elsewhere"), "CA_DATABASE_URL": "sqlite:" + filepath.Join(dataDir, "ca.db")}
	checkSignedRun(t, s, vars, pinVars, sqliteTamperable(filepath.Join(dataDir, "ca.db")))

	runTamperScenarios(t, func(t *testing.T) (map[string]string, tamperable) {
		path := filepath.Join(t.TempDir(), "clone.db")
		copyFile(t, filepath.Join(dataDir, "ca.db"), path)
		return map[string]string{"CA_DATA_DIR": dataDir, "CA_DATABASE_URL": "sqlite:" + path}, sqliteTamperable(path)
	})
}

func TestAuditVerifyOnAFreshDataDirCreatesNothing(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "fresh")
	out, errOut, code := runCA(t, map[string]string{"CA_DATA_DIR": dataDir}, "audit", "verify")
	if code != 1 || !strings.Contains(errOut, "never creates") {
		t.Fatalf("verify on a fresh data dir: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ca audit verify created %s (%v)", dataDir, err)
	}
}

func TestAuditVerifyNeverMigratesAnOlderSchema(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	vars := map[string]string{"CA_DATA_DIR": dataDir}
	if out, errOut, code := runCA(t, vars, "migrate", "up"); code != 0 {
		t.Fatalf("migrate up: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := runCA(t, vars, "migrate", "down"); code != 0 {
		t.Fatalf("migrate down: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := runCA(t, vars, "audit", "verify")
	if code != 1 || !strings.Contains(errOut, "run `ca migrate up`") {
		t.Fatalf("verify on an older schema: exit %d\n%s%s", code, out, errOut)
	}
	older := fmt.Sprintf("schema version %d", storeopen.ExpectedVersion-1)
	if out, errOut, code := runCA(t, vars, "migrate", "version"); code != 0 || !strings.Contains(out+errOut, older) {
		t.Fatalf("after verify the schema is not still %q: exit %d\n%s%s", older, code, out, errOut)
	}
}

// clonePostgres copies the database (no session may be connected to it)
// into a new one, dropped at cleanup, and returns its URL.
func clonePostgres(t *testing.T, dbURL string) string {
	t.Helper()
	ctx := context.Background()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	src := strings.TrimPrefix(u.Path, "/")
	name := fmt.Sprintf("%s_c%d", src, time.Now().UnixNano()%1e9)
	admin, err := pgx.Connect(ctx, testkit.PostgresAdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+src); err != nil {
		t.Fatalf("clone %s: %v", src, err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, testkit.PostgresAdminURL())
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u.Path = "/" + name
	return u.String()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
