package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func testAuditChain(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var returned []store.AuditEntry
	for i := 0; i < 30; i++ {
		e := auditFor("deny", fmt.Sprintf("t%d", i), t0.Add(time.Duration(i)*time.Second+time.Duration(i)))
		e.Decision, e.Reason = "deny", "policy_denied"
		switch i % 3 {
		case 0:
			e.Details = nil
		case 1:
			e.Details = json.RawMessage(`{"b": 2,   "a": 1}`) // key order and spacing kept byte for byte
		}
		got, err := s.AppendAudit(ctx, e)
		if err != nil {
			t.Fatalf("AppendAudit %d: %v", i, err)
		}
		if got.Seq != int64(i+1) {
			t.Fatalf("append %d got seq %d", i, got.Seq)
		}
		returned = append(returned, got)
	}
	stored := allAudit(t, s)
	if len(stored) != 30 {
		t.Fatalf("read %d entries, want 30", len(stored))
	}
	verifyChain(t, stored)
	for i := range stored {
		r, g := returned[i], stored[i]
		if r.Time != g.Time || !bytesEq(r.Hash, g.Hash) || string(r.Details) != string(g.Details) ||
			r.Actor != g.Actor || r.Reason != g.Reason || r.Target != g.Target {
			t.Errorf("entry %d as returned %+v, as read back %+v", i+1, r, g)
		}
	}
	if string(stored[1].Details) != `{"b": 2,   "a": 1}` {
		t.Errorf("details read back as %s", stored[1].Details)
	}
	page, err := s.AuditEntries(ctx, 25, 100)
	if err != nil || len(page) != 5 || page[0].Seq != 26 {
		t.Errorf("AuditEntries(25, 100) = %d entries from %v, %v", len(page), page, err)
	}
}

func testAuditConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	const workers, each = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				var err error
				if i%3 == 0 { // interleave issuances, which append in their own transaction
					c := leaf("root", "spiffe://example.org/c", t0, time.Hour)
					_, err = s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, t0))
				} else {
					_, err = s.AppendAudit(ctx, auditFor("deny", fmt.Sprintf("w%d-%d", w, i), t0))
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append: %v", err)
	}
	entries := allAudit(t, s)
	if len(entries) != workers*each {
		t.Fatalf("log has %d entries, want %d", len(entries), workers*each)
	}
	verifyChain(t, entries)
}

func testAuditAppendOnly(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	raw, ok := s.(RawExecer)
	if !ok {
		t.Fatalf("%T does not implement storetest.RawExecer (add an export_test.go), so append-only cannot be checked", s)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.AppendAudit(ctx, auditFor("init", "root", t0)); err != nil {
			t.Fatal(err)
		}
	}
	before := allAudit(t, s)
	for _, q := range []string{
		"UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
		"UPDATE audit_log SET hash = prev_hash WHERE seq = 3",
		"DELETE FROM audit_log WHERE seq = 3",
		"DELETE FROM audit_log",
	} {
		if err := raw.ExecRaw(ctx, q); err == nil {
			t.Errorf("%q succeeded on the audit log", q)
		}
	}
	after := allAudit(t, s)
	if len(after) != len(before) {
		t.Fatalf("log has %d entries after tampering attempts, had %d", len(after), len(before))
	}
	for i := range before {
		if before[i].Actor != after[i].Actor || !bytesEq(before[i].Hash, after[i].Hash) {
			t.Errorf("entry %d changed", i+1)
		}
	}
	if _, err := s.AppendAudit(ctx, auditFor("init", "root", t0)); err != nil {
		t.Fatalf("append after refused tampering: %v", err)
	}
}
