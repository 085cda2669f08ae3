package audit_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/store"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

func ecKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheckpointSignaturesCoverEveryField(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.UTC)
	for _, key := range []crypto.Signer{ecKey(t), rsaKey} {
		t.Run(fmt.Sprintf("%T", key.Public()), func(t *testing.T) {
			c, err := audit.SignCheckpoint(key, store.AuditCheckpoint{Seq: 7, Hash: []byte{1, 2, 3}, Time: at, Kind: store.CheckpointPeriodic})
			if err != nil {
				t.Fatal(err)
			}
			if !c.Time.Equal(at.Truncate(time.Microsecond)) {
				t.Errorf("signed time %s is not truncated to the microsecond", c.Time)
			}
			if err := audit.VerifyCheckpoint(key.Public(), c); err != nil {
				t.Fatalf("a fresh checkpoint does not verify: %v", err)
			}
			changes := map[string]func(c *store.AuditCheckpoint){
				"another seq":    func(c *store.AuditCheckpoint) { c.Seq++ },
				"another hash":   func(c *store.AuditCheckpoint) { c.Hash = []byte{1, 2, 4} },
				"another time":   func(c *store.AuditCheckpoint) { c.Time = c.Time.Add(time.Microsecond) },
				"another kind":   func(c *store.AuditCheckpoint) { c.Kind = store.CheckpointShutdown },
				"another key id": func(c *store.AuditCheckpoint) { c.KeyID = strings.Repeat("0", 64) },
				"a flipped sig bit": func(c *store.AuditCheckpoint) {
					c.Signature = bytes.Clone(c.Signature)
					c.Signature[len(c.Signature)-1] ^= 1
				},
			}
			for name, change := range changes {
				bad := c
				change(&bad)
				if err := audit.VerifyCheckpoint(key.Public(), bad); !errors.Is(err, audit.ErrCheckpointSignature) {
					t.Errorf("%s: VerifyCheckpoint = %v, want ErrCheckpointSignature", name, err)
				}
			}
			other := ecKey(t)
			if err := audit.VerifyCheckpoint(other.Public(), c); !errors.Is(err, audit.ErrCheckpointSignature) {
				t.Errorf("checked with another key: %v", err)
			}
			forged, err := audit.SignCheckpoint(other, c)
			if err != nil {
				t.Fatal(err)
			}
			forged.KeyID = c.KeyID // claims the real key
			if err := audit.VerifyCheckpoint(key.Public(), forged); !errors.Is(err, audit.ErrCheckpointSignature) {
				t.Errorf("a checkpoint signed by another key claiming the real key's id: %v", err)
			}
		})
	}
}

// checkpointBackend is a store with a way to tamper with both the audit log
// and its checkpoints behind the store's back.
type checkpointBackend struct {
	name string
	open func(t *testing.T) (store.Store, func(t *testing.T, stmts ...string))
	blob func(b []byte) string // a SQL literal of b
}

func checkpointBackends() []checkpointBackend {
	return []checkpointBackend{
		{"postgres", func(t *testing.T) (store.Store, func(t *testing.T, stmts ...string)) {
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
				all := append([]string{"ALTER TABLE audit_log DISABLE TRIGGER USER", "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"}, stmts...)
				all = append(all, "ALTER TABLE audit_log ENABLE TRIGGER USER", "ALTER TABLE audit_checkpoints ENABLE TRIGGER USER")
				for _, s := range all {
					if _, err := conn.Exec(ctx, s); err != nil {
						t.Fatalf("%s: %v", s, err)
					}
				}
			}
		}, func(b []byte) string { return "'\\x" + hex.EncodeToString(b) + "'::bytea" }},
		{"sqlite", func(t *testing.T) (store.Store, func(t *testing.T, stmts ...string)) {
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
				all := append([]string{"DROP TRIGGER IF EXISTS audit_log_no_update", "DROP TRIGGER IF EXISTS audit_log_no_delete",
					"DROP TRIGGER IF EXISTS audit_checkpoints_no_update", "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete"}, stmts...)
				for _, s := range all {
					if _, err := db.Exec(s); err != nil {
						t.Fatalf("%s: %v", s, err)
					}
				}
			}
		}, func(b []byte) string { return "X'" + hex.EncodeToString(b) + "'" }},
	}
}

// rewriteFrom returns the statements that change entry seq's actor and
// recompute the hash chain from there to the head, as someone with database
// write access but no key can.
func rewriteFrom(t *testing.T, st store.Store, seq int64, blob func([]byte) string) []string {
	t.Helper()
	all, err := st.AuditEntries(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	var prev []byte
	for _, e := range all {
		if e.Seq == seq {
			e.Actor = "mallory"
		}
		if e.Seq >= seq {
			e.PrevHash = prev
			e.Hash = store.AuditHash(prev, e)
			stmts = append(stmts, fmt.Sprintf("UPDATE audit_log SET actor = '%s', prev_hash = %s, hash = %s WHERE seq = %d",
				e.Actor, blob(e.PrevHash), blob(e.Hash), e.Seq))
		}
		prev = e.Hash
	}
	return stmts
}

func newCheckpointer(t *testing.T, st store.Store, key crypto.Signer, clk clock.Clock, logs *bytes.Buffer) *audit.Checkpointer {
	t.Helper()
	cp, err := audit.NewCheckpointer(audit.CheckpointerConfig{Store: st, Signer: key, Clock: clk, Interval: time.Minute,
		Log: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestCheckpointerSignsOncePerIntervalAsLeader(t *testing.T) {
	for _, b := range checkpointBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st, _ := b.open(t)
			clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
			var logs bytes.Buffer
			key := ecKey(t)
			cp := newCheckpointer(t, st, key, clk, &logs)
			other := newCheckpointer(t, st, key, clk, &logs) // another replica

			if _, err := cp.Write(ctx, store.CheckpointStartup); err != nil {
				t.Fatalf("startup checkpoint of an empty log: %v", err)
			}
			head := appendEntries(t, st, 3)
			step := func(name string, advance time.Duration, c *audit.Checkpointer, want bool) {
				t.Helper()
				clk.Advance(advance)
				wrote, err := c.Once(ctx)
				if err != nil || wrote != want {
					t.Fatalf("%s: Once = %v, %v; want %v", name, wrote, err, want)
				}
			}
			step("half an interval after the startup checkpoint", 30*time.Second, cp, false)
			step("a full interval after it", 30*time.Second, cp, true)
			step("another replica just after", time.Second, other, false)
			step("another replica an interval later", time.Minute, other, true)
			release, ok, err := st.TryLeadership(ctx, "audit-checkpoint")
			if err != nil || !ok {
				t.Fatalf("TryLeadership: %v %v", ok, err)
			}
			step("while a third holds the leadership", 2*time.Minute, cp, false)
			release()
			step("after it let go", 0, cp, true)
			// A forged row stamped far in the future does not hold the real
			// checkpoints back.
			forged, err := audit.SignCheckpoint(ecKey(t), store.AuditCheckpoint{Seq: head.Seq, Hash: head.Hash, Time: clk.Now().Add(24 * time.Hour), Kind: store.CheckpointPeriodic})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.InsertAuditCheckpoint(ctx, forged); err != nil {
				t.Fatal(err)
			}
			step("with a forged future checkpoint stored", time.Second, cp, true)

			list, err := st.AuditCheckpoints(ctx, 0, 0)
			if err != nil || len(list) != 6 {
				t.Fatalf("%d checkpoints (%v), want 6", len(list), err)
			}
			list = append(list[:4], list[5]) // without the forged one
			if list[0].Seq != 0 || list[0].Kind != store.CheckpointStartup {
				t.Errorf("first checkpoint %+v, want the startup one of the empty log", list[0])
			}
			for _, c := range list[1:] {
				if c.Seq != head.Seq || !bytes.Equal(c.Hash, head.Hash) || c.Kind != store.CheckpointPeriodic {
					t.Errorf("checkpoint %+v does not sign the head %d", c, head.Seq)
				}
				if err := audit.VerifyCheckpoint(key.Public(), c); err != nil {
					t.Errorf("stored checkpoint does not verify: %v", err)
				}
			}
			if !strings.Contains(logs.String(), `"msg":"audit checkpoint signed"`) || !strings.Contains(logs.String(), hex.EncodeToString(head.Hash)) {
				t.Errorf("checkpoints not logged:\n%s", logs.String())
			}
		})
	}
}

func TestCheckpointerRefusesToSignOverATruncatedLog(t *testing.T) {
	for _, b := range checkpointBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st, tamper := b.open(t)
			clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
			var logs bytes.Buffer
			cp := newCheckpointer(t, st, ecKey(t), clk, &logs)
			appendEntries(t, st, 10)
			if _, err := cp.Write(ctx, store.CheckpointStartup); err != nil {
				t.Fatal(err)
			}
			// Truncated, and the checkpoint over the removed entries deleted
			// too: this process still remembers what it signed.
			tamper(t, "DELETE FROM audit_log WHERE seq > 6", "DELETE FROM audit_checkpoints")
			clk.Advance(time.Minute)
			if _, err := cp.Once(ctx); !errors.Is(err, audit.ErrChainTampered) {
				t.Fatalf("Once over a truncated log: %v, want ErrChainTampered", err)
			}
			// A replica started after the truncation has nothing to compare
			// with (the checkpoint is gone too): it signs the truncated head;
			// `ca audit verify` reports the gap.
			freshKey := ecKey(t)
			fresh := newCheckpointer(t, st, freshKey, clk, &logs)
			if _, err := fresh.Write(ctx, store.CheckpointStartup); err != nil {
				t.Fatal(err)
			}
			appendEntries(t, st, 2)
			tamper(t, fmt.Sprintf("UPDATE audit_log SET hash = %s WHERE seq = 6", b.blob([]byte("rewritten"))))
			// Another replica with the same key and nothing in memory finds
			// the stored checkpoint over entry 6 and refuses.
			if _, err := newCheckpointer(t, st, freshKey, clk, &logs).Write(ctx, store.CheckpointStartup); !errors.Is(err, audit.ErrChainTampered) {
				t.Fatalf("a new replica over a rewritten entry: %v, want ErrChainTampered", err)
			}
			// A replica with another key: the stored checkpoint does not
			// verify with it and proves nothing, so it signs (and says so).
			again := newCheckpointer(t, st, ecKey(t), clk, &logs)
			if _, err := again.Write(ctx, store.CheckpointStartup); err != nil {
				t.Fatalf("a checkpoint of another key blocked signing: %v", err)
			}
			if !strings.Contains(logs.String(), "does not verify with the checkpoint key") {
				t.Errorf("a stored checkpoint of another key was not reported:\n%s", logs.String())
			}
			if _, err := fresh.Write(ctx, store.CheckpointShutdown); !errors.Is(err, audit.ErrChainTampered) {
				t.Fatalf("Write over a rewritten entry: %v, want ErrChainTampered", err)
			}
			if !strings.Contains(logs.String(), "refusing to sign a checkpoint") {
				t.Errorf("tampering not logged:\n%s", logs.String())
			}
		})
	}
}

func TestConcurrentReplicasWriteOnePeriodicCheckpoint(t *testing.T) {
	for _, b := range checkpointBackends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			st, _ := b.open(t)
			clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
			key := ecKey(t)
			var logs bytes.Buffer
			first := newCheckpointer(t, st, key, clk, &logs)
			if _, err := first.Write(ctx, store.CheckpointStartup); err != nil {
				t.Fatal(err)
			}
			appendEntries(t, st, 2)
			clk.Advance(time.Minute)
			const replicas = 4
			results := make(chan bool, replicas)
			for range replicas {
				// Each replica has its own logger: bytes.Buffer is not safe
				// for concurrent writers.
				c := newCheckpointer(t, st, key, clk, &bytes.Buffer{})
				go func() {
					wrote, err := c.Once(ctx)
					if err != nil {
						t.Errorf("Once: %v", err)
					}
					results <- wrote
				}()
			}
			wrote := 0
			for range replicas {
				if <-results {
					wrote++
				}
			}
			list, err := st.AuditCheckpoints(ctx, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Leadership makes concurrent ticks take turns; whoever comes
			// after the writer finds the checkpoint fresh.
			if wrote != 1 || len(list) != 2 {
				t.Fatalf("%d replicas wrote, %d checkpoints stored; want exactly one periodic checkpoint", wrote, len(list))
			}
		})
	}
}
