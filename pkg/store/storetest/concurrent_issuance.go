package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// Concurrent issuance: stores may group concurrent RecordIssuance calls into
// one transaction (the Postgres store does); every caller must still get its
// own answer, and the chain must stay linear.

func testIssuanceManyConcurrentCallers(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if err := s.InsertIssuer(ctx, rootIssuer("root")); err != nil {
		t.Fatal(err)
	}
	const callers = 64
	type answer struct {
		c   store.Certificate
		e   store.AuditEntry
		err error
	}
	answers := make([]answer, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := leaf("root", "spiffe://example.org/many", t0.Add(time.Duration(i)*time.Millisecond), time.Hour)
			e, err := s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, c.CreatedAt))
			answers[i] = answer{c, e, err}
		}()
	}
	wg.Wait()
	seqs := map[int64]bool{}
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("caller %d: %v", i, a.err)
		}
		if a.e.Target != a.c.Serial || a.e.Seq < 1 || seqs[a.e.Seq] {
			t.Fatalf("caller %d got entry seq %d target %s for serial %s (duplicate or foreign)", i, a.e.Seq, a.e.Target, a.c.Serial)
		}
		seqs[a.e.Seq] = true
		got, err := s.GetCertificate(ctx, a.c.Serial)
		if err != nil || string(got.DER) != string(a.c.DER) {
			t.Fatalf("caller %d: certificate returned but not stored: %v", i, err)
		}
	}
	entries := allAudit(t, s)
	if len(entries) != callers {
		t.Fatalf("%d audit entries, want %d", len(entries), callers)
	}
	verifyChain(t, entries)
	for _, a := range answers {
		stored := entries[a.e.Seq-1]
		if !bytesEq(stored.Hash, a.e.Hash) || stored.Target != a.c.Serial {
			t.Fatalf("entry %d as returned differs from the stored one", a.e.Seq)
		}
	}
}

func testIssuanceCollisionAmongConcurrentCallers(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if err := s.InsertIssuer(ctx, rootIssuer("root")); err != nil {
		t.Fatal(err)
	}
	taken := leaf("root", "spiffe://example.org/first", t0, time.Hour)
	if _, err := s.RecordIssuance(ctx, taken, auditFor("issue", taken.Serial, t0)); err != nil {
		t.Fatal(err)
	}
	// 8 serials, each asked for by 4 callers at once, plus 4 callers
	// re-using the serial already stored.
	var certs []store.Certificate
	for range 8 {
		c := leaf("root", "spiffe://example.org/dup", t0, time.Hour)
		for k := range 4 {
			d := c
			d.DER = []byte("der-" + c.Serial + "-" + string(rune('a'+k)))
			certs = append(certs, d)
		}
	}
	for k := range 4 {
		d := taken
		d.DER = []byte("der-again-" + string(rune('a'+k)))
		certs = append(certs, d)
	}
	errs := make([]error, len(certs))
	var wg sync.WaitGroup
	for i, c := range certs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.RecordIssuance(ctx, c, auditFor("issue", c.Serial, t0.Add(time.Second)))
		}()
	}
	wg.Wait()
	wins := map[string][]byte{}
	for i, err := range errs {
		switch {
		case err == nil:
			if _, dup := wins[certs[i].Serial]; dup {
				t.Fatalf("serial %s recorded twice", certs[i].Serial)
			}
			wins[certs[i].Serial] = certs[i].DER
		case errors.Is(err, store.ErrConflict):
		default:
			t.Fatalf("caller %d: %v; want success or ErrConflict", i, err)
		}
	}
	if len(wins) != 8 {
		t.Fatalf("%d serials won, want exactly one winner for each of the 8 new serials", len(wins))
	}
	if _, ok := wins[taken.Serial]; ok {
		t.Fatal("a serial already stored was recorded again")
	}
	for serial, der := range wins {
		got, err := s.GetCertificate(ctx, serial)
		if err != nil || string(got.DER) != string(der) {
			t.Fatalf("serial %s: stored row is not the winner's: %v", serial, err)
		}
	}
	entries := allAudit(t, s)
	if len(entries) != 1+8 {
		t.Fatalf("%d audit entries, want 9 (losers must append nothing)", len(entries))
	}
	verifyChain(t, entries)
}
