package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestVerifyCheckpointedCatchesWhatTheChainAloneCannot(t *testing.T) {
	// appendEntries stamps entries from 2025-03-01 12:00:00, a second apart;
	// checkpoints follow a fake clock from there.
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		// tamper returns statements run behind the store's back.
		tamper     func(t *testing.T, st store.Store, blob func([]byte) string, forge func(store.AuditCheckpoint) string) []string
		now        time.Duration // after the last checkpoint
		stopped    bool
		noKey      bool
		wantSeq    int64
		wantKind   audit.Kind
		wantDetail string
	}{
		{name: "an intact log with fresh checkpoints verifies", now: 30 * time.Second},
		{name: "a truncated tail is caught by the checkpoint over it",
			tamper: func(*testing.T, store.Store, func([]byte) string, func(store.AuditCheckpoint) string) []string {
				return []string{"DELETE FROM audit_log WHERE seq > 25"}
			}, wantSeq: 26, wantKind: audit.KindRemoved, wantDetail: "signed entry 30"},
		{name: "a rewritten entry with the whole chain recomputed is caught at the next checkpoint",
			tamper: func(t *testing.T, st store.Store, blob func([]byte) string, _ func(store.AuditCheckpoint) string) []string {
				return rewriteFrom(t, st, 12, blob)
			}, wantSeq: 20, wantKind: audit.KindAltered, wantDetail: "checkpoint"},
		{name: "a forged checkpoint row is invalid",
			tamper: func(_ *testing.T, _ store.Store, _ func([]byte) string, forge func(store.AuditCheckpoint) string) []string {
				return []string{forge(store.AuditCheckpoint{Seq: 30, Hash: bytes.Repeat([]byte{7}, 32), Time: start.Add(40 * time.Minute), Kind: store.CheckpointPeriodic})}
			}, wantSeq: 30, wantKind: audit.KindCheckpointInvalid},
		{name: "a checkpoint's seq moved is invalid",
			tamper: func(*testing.T, store.Store, func([]byte) string, func(store.AuditCheckpoint) string) []string {
				return []string{"UPDATE audit_checkpoints SET seq = 9 WHERE seq = 10"}
			}, wantSeq: 9, wantKind: audit.KindCheckpointInvalid},
		{name: "checkpoints removed in the middle are missing",
			tamper: func(*testing.T, store.Store, func([]byte) string, func(store.AuditCheckpoint) string) []string {
				return []string{"DELETE FROM audit_checkpoints WHERE seq IN (10, 20)"}
			}, wantSeq: 1, wantKind: audit.KindCheckpointsMissing, wantDetail: "checkpoints were removed"},
		{name: "the tail truncated together with its checkpoints leaves checkpoints missing at the end",
			tamper: func(*testing.T, store.Store, func([]byte) string, func(store.AuditCheckpoint) string) []string {
				return []string{"DELETE FROM audit_log WHERE seq > 20", "DELETE FROM audit_checkpoints WHERE seq > 20"}
			}, now: 5 * time.Minute, wantSeq: 21, wantKind: audit.KindCheckpointsMissing, wantDetail: "(startup,"},
		{name: "no checkpoint for longer than allowed is missing", now: 10 * time.Minute,
			wantSeq: 31, wantKind: audit.KindCheckpointsMissing, wantDetail: "--ca-stopped"},
		{name: "a CA stopped gracefully verifies long after when the operator says it is stopped", now: 10 * time.Minute, stopped: true},
		{name: "without a trusted key stored checkpoints cannot be checked", noKey: true},
	}
	for _, b := range checkpointBackends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ctx := context.Background()
					st, tamper := b.open(t)
					key := ecKey(t)
					clk := clock.NewFake(start)
					var logs bytes.Buffer
					cp := newCheckpointer(t, st, key, clk, &logs)
					// Checkpoints: startup over 0, periodic over 10 and 20, a
					// graceful shutdown over 20, then after 2 hours down a
					// startup over 20 and a shutdown over 30.
					write := func(kind store.CheckpointKind, advance time.Duration) {
						t.Helper()
						clk.Advance(advance)
						if _, err := cp.Write(ctx, kind); err != nil {
							t.Fatal(err)
						}
					}
					write(store.CheckpointStartup, 0)
					appendEntries(t, st, 10)
					write(store.CheckpointPeriodic, time.Minute)
					appendMore(t, st, 10)
					write(store.CheckpointPeriodic, time.Minute)
					write(store.CheckpointShutdown, 10*time.Second)
					write(store.CheckpointStartup, 2*time.Hour)
					appendMore(t, st, 10)
					write(store.CheckpointShutdown, time.Minute)
					if tt.tamper != nil {
						forge := func(c store.AuditCheckpoint) string {
							other, err := audit.SignCheckpoint(ecKey(t), c)
							if err != nil {
								t.Fatal(err)
							}
							id, _ := audit.KeyID(key.Public())
							return fmt.Sprintf("INSERT INTO audit_checkpoints (seq, hash, time, kind, key_id, signature) VALUES (%d, %s, %s, '%s', '%s', %s)",
								c.Seq, b.blob(c.Hash), timeLiteral(b.name, c.Time), c.Kind, id, b.blob(other.Signature))
						}
						tamper(t, tt.tamper(t, st, b.blob, forge)...)
					}
					pol := audit.CheckpointPolicy{Key: key.Public(), MaxGap: 3 * time.Minute, Now: clk.Now().Add(tt.now), Stopped: tt.stopped}
					if tt.noKey {
						pol.Key = nil
					}
					rep, err := audit.VerifyCheckpointed(ctx, st, audit.Options{PageSize: 4}, pol)
					switch {
					case tt.noKey:
						if !errors.Is(err, audit.ErrNoCheckpointKey) || errors.Is(err, audit.ErrBroken) {
							t.Fatalf("without a key: %v", err)
						}
						return
					case tt.wantKind == "":
						if err != nil || rep.Entries != 30 || rep.Checkpoints != 6 || rep.Latest.Seq != 30 {
							t.Fatalf("intact: %+v %v", rep, err)
						}
						return
					}
					var be *audit.BrokenError
					if !errors.As(err, &be) {
						t.Fatalf("want a finding, got %+v %v", rep, err)
					}
					if be.Finding.Seq != tt.wantSeq || be.Finding.Kind != tt.wantKind || !strings.Contains(be.Finding.Detail, tt.wantDetail) {
						t.Errorf("finding %+v, want entry %d %s (%q)", be.Finding, tt.wantSeq, tt.wantKind, tt.wantDetail)
					}
				})
			}
		})
	}
}

func TestAnUncheckpointedLogIsMissingCheckpointsOnceOldOrWhenAKeyExists(t *testing.T) {
	st, _ := checkpointBackends()[1].open(t)
	appendEntries(t, st, 3) // from 2025-03-01 12:00:00
	first := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		pol     audit.CheckpointPolicy
		missing bool
	}{
		{"fresh entries and no key verify", audit.CheckpointPolicy{MaxGap: 3 * time.Minute, Now: first.Add(time.Minute)}, false},
		{"entries older than the gap without any checkpoint are missing them", audit.CheckpointPolicy{MaxGap: 3 * time.Minute, Now: first.Add(time.Hour)}, true},
		{"a checkpoint key that exists means checkpoints are due", audit.CheckpointPolicy{Key: ecKey(t).Public(), MaxGap: 3 * time.Minute, Now: first.Add(time.Minute)}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := audit.VerifyCheckpointed(context.Background(), st, audit.Options{}, tc.pol)
			var be *audit.BrokenError
			got := errors.As(err, &be) && be.Finding.Kind == audit.KindCheckpointsMissing
			if got != tc.missing || (!tc.missing && err != nil) {
				t.Fatalf("err = %v, want missing %v", err, tc.missing)
			}
		})
	}
}

// appendMore appends n entries after the existing ones.
func appendMore(t *testing.T, st store.Store, n int) {
	t.Helper()
	head, err := st.AuditHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := st.AppendAudit(context.Background(), store.AuditEntry{Time: head.Time.Add(time.Duration(i+1) * time.Second),
			Actor: "op", Action: "revoke", Target: fmt.Sprintf("%x", head.Seq+int64(i)), Decision: "allow", RequestID: "r"}); err != nil {
			t.Fatal(err)
		}
	}
}

func timeLiteral(backend string, at time.Time) string {
	if backend == "postgres" {
		return "'" + at.UTC().Format(time.RFC3339Nano) + "'"
	}
	return fmt.Sprint(at.UnixMicro())
}
