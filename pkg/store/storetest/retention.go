package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RunRetention runs the retention conformance tests (store.RetentionStore).
// open is as for Run.
func RunRetention(t *testing.T, open func(t *testing.T) store.Store) {
	suites := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"OCSP responses are pruned in batches once their certificate expired before the cut-off", testPruneOCSPResponses},
		{"certificates expired before the cut-off are pruned in batches with their OCSP responses", testPruneCertificates},
		{"revoked certificates are pruned only once expired before the cut-off, and CRL entries stay meanwhile", testPruneRevoked},
		{"renewals of pruned certificates keep their lineage and list in the inventory", testPruneLineage},
		{"ended holds are pruned, holds in force are kept", testPruneHolds},
		{"authorization report aggregates are pruned by minute, oldest first", testPruneAuthzReports},
		{"prunes refuse a zero cut-off or limit", testPruneInvalid},
		{"retention stats report the oldest certificate and table sizes", testRetentionStats},
	}
	for _, sc := range suites {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, open(t))
		})
	}
}

func mustOCSP(t *testing.T, s store.Store, c store.Certificate, at time.Time) {
	t.Helper()
	err := s.PutOCSPResponse(ctxT(t), store.OCSPResponse{
		Serial: c.Serial, IssuerID: c.IssuerID, Revoked: c.Status == store.CertRevoked,
		ThisUpdate: at, NextUpdate: at.Add(time.Hour), CertNotAfter: c.NotAfter, DER: []byte("ocsp-" + c.Serial),
	})
	if err != nil {
		t.Fatalf("PutOCSPResponse(%s): %v", c.Serial, err)
	}
}

// pruneAll calls prune with batches of limit until a batch comes back
// short, and returns the total and the number of calls.
func pruneAll(t *testing.T, what string, limit int, prune func(limit int) (int64, error)) (total int64, calls int) {
	t.Helper()
	for {
		n, err := prune(limit)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n > int64(limit) {
			t.Fatalf("%s deleted %d rows in a batch of %d", what, n, limit)
		}
		total += n
		calls++
		if n < int64(limit) {
			return total, calls
		}
	}
}

func exists(t *testing.T, s store.Store, serial string) bool {
	t.Helper()
	_, err := s.GetCertificate(ctxT(t), serial)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetCertificate(%s): %v", serial, err)
	}
	return err == nil
}

func hasOCSP(t *testing.T, s store.Store, serial string) bool {
	t.Helper()
	_, err := s.GetOCSPResponse(ctxT(t), serial)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetOCSPResponse(%s): %v", serial, err)
	}
	return err == nil
}

func testPruneOCSPResponses(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	var old []store.Certificate
	for i := 0; i < 7; i++ {
		c := leaf("a", "spiffe://example.org/w", t0, time.Hour) // NotAfter t0+1h
		mustRecord(t, s, c)
		mustOCSP(t, s, c, t0)
		old = append(old, c)
	}
	edge := leaf("a", "spiffe://example.org/w", t0, 2*time.Hour) // NotAfter = cut-off: kept
	live := leaf("a", "spiffe://example.org/w", t0, 5*time.Hour)
	for _, c := range []store.Certificate{edge, live} {
		mustRecord(t, s, c)
		mustOCSP(t, s, c, t0)
	}
	cut := t0.Add(2 * time.Hour)
	total, calls := pruneAll(t, "PruneOCSPResponses", 3, func(limit int) (int64, error) {
		return s.PruneOCSPResponses(ctx, cut, limit)
	})
	if total != 7 || calls != 3 {
		t.Fatalf("pruned %d responses in %d batches of 3, want 7 in 3", total, calls)
	}
	for _, c := range old {
		if hasOCSP(t, s, c.Serial) {
			t.Errorf("response of %s (NotAfter %s) kept past the cut-off %s", c.Serial, c.NotAfter, cut)
		}
		if !exists(t, s, c.Serial) {
			t.Errorf("certificate %s was pruned with its OCSP response", c.Serial)
		}
	}
	for _, c := range []store.Certificate{edge, live} {
		if !hasOCSP(t, s, c.Serial) {
			t.Errorf("response of %s (NotAfter %s) pruned before the cut-off %s", c.Serial, c.NotAfter, cut)
		}
	}
}

func testPruneCertificates(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	var old []store.Certificate
	for i := 0; i < 5; i++ {
		c := leaf("a", "spiffe://example.org/w", t0.Add(time.Duration(i)*time.Minute), time.Hour)
		mustRecord(t, s, c)
		if i%2 == 0 { // a leftover response must not stop the delete (foreign key)
			mustOCSP(t, s, c, t0)
		}
		old = append(old, c)
	}
	keep := leaf("a", "spiffe://example.org/w", t0, 3*time.Hour)
	mustRecord(t, s, keep)
	mustOCSP(t, s, keep, t0)
	auditBefore := allAudit(t, s)

	cut := t0.Add(2 * time.Hour)
	// The oldest expire first: a batch of 2 takes the two earliest NotAfter.
	n, err := s.PruneExpiredCertificates(ctx, cut, 2)
	if err != nil || n != 2 {
		t.Fatalf("PruneExpiredCertificates(limit 2) = %d, %v; want 2", n, err)
	}
	if exists(t, s, old[0].Serial) || exists(t, s, old[1].Serial) || !exists(t, s, old[2].Serial) {
		t.Fatalf("the first batch did not take the earliest-expiring certificates")
	}
	total, _ := pruneAll(t, "PruneExpiredCertificates", 2, func(limit int) (int64, error) {
		return s.PruneExpiredCertificates(ctx, cut, limit)
	})
	if total != 3 {
		t.Fatalf("pruned %d more certificates, want 3", total)
	}
	for _, c := range old {
		if exists(t, s, c.Serial) || hasOCSP(t, s, c.Serial) {
			t.Errorf("certificate %s or its OCSP response kept past the cut-off", c.Serial)
		}
		if _, err := s.CertificateStatus(ctx, c.Serial); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CertificateStatus of pruned %s: %v, want ErrNotFound (OCSP answers unknown)", c.Serial, err)
		}
	}
	if !exists(t, s, keep.Serial) || !hasOCSP(t, s, keep.Serial) {
		t.Errorf("unexpired certificate %s or its response was pruned", keep.Serial)
	}
	// The audit log is untouched and still chains.
	after := allAudit(t, s)
	if len(after) != len(auditBefore) {
		t.Fatalf("audit log has %d entries after the prune, %d before", len(after), len(auditBefore))
	}
	verifyChain(t, after)
	// The pruned serial can be neither renewed nor revoked: it is gone.
	r := leaf("a", "spiffe://example.org/w", cut, time.Hour)
	r.RenewedFrom = old[4].Serial
	if _, err := s.RecordIssuance(ctx, r, auditFor("renew", r.Serial, cut)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("renewing a pruned certificate: %v, want ErrNotFound", err)
	}
}

func testPruneRevoked(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	revoked := leaf("a", "spiffe://example.org/w", t0, 10*time.Hour) // NotAfter t0+10h
	mustRecord(t, s, revoked)
	mustRevoke(t, s, revoked, t0.Add(time.Minute), "keyCompromise")
	revokedOld := leaf("a", "spiffe://example.org/w", t0, time.Hour)
	mustRecord(t, s, revokedOld)
	mustRevoke(t, s, revokedOld, t0.Add(time.Minute), "keyCompromise")

	// A cut-off before its NotAfter never takes it, whatever its status.
	now := t0.Add(5 * time.Hour)
	if _, err := s.PruneExpiredCertificates(ctx, now, 100); err != nil {
		t.Fatal(err)
	}
	if !exists(t, s, revoked.Serial) {
		t.Fatalf("revoked, unexpired certificate %s was pruned", revoked.Serial)
	}
	if exists(t, s, revokedOld.Serial) {
		t.Fatalf("revoked certificate %s, expired before the cut-off, was kept", revokedOld.Serial)
	}
	entries, err := s.RevokedEntries(ctx, "a", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Serial != revoked.Serial {
		t.Fatalf("CRL entries after the prune = %+v, want only %s", entries, revoked.Serial)
	}
	// After it expires (and the cut-off passes it), it goes too, and the
	// CRL has no entry left.
	later := t0.Add(11 * time.Hour)
	if n, err := s.PruneExpiredCertificates(ctx, later, 100); err != nil || n != 1 {
		t.Fatalf("PruneExpiredCertificates after expiry = %d, %v; want 1", n, err)
	}
	if entries, err := s.RevokedEntries(ctx, "a", later); err != nil || len(entries) != 0 {
		t.Fatalf("CRL entries after expiry and prune = %+v, %v; want none", entries, err)
	}
}

func testPruneLineage(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "a")
	const id = "spiffe://example.org/w"
	first := leaf("a", id, t0, time.Hour)
	mustRecord(t, s, first)
	second := leaf("a", id, t0.Add(50*time.Minute), time.Hour)
	second.RenewedFrom = first.Serial
	mustRecord(t, s, second)
	third := leaf("a", id, t0.Add(100*time.Minute), 10*time.Hour)
	third.RenewedFrom = second.Serial
	mustRecord(t, s, third)

	cut := t0.Add(3 * time.Hour) // first and second expired before it
	if n, err := s.PruneExpiredCertificates(ctx, cut, 100); err != nil || n != 2 {
		t.Fatalf("PruneExpiredCertificates = %d, %v; want 2", n, err)
	}
	got, err := s.GetCertificate(ctx, third.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if got.Lineage != first.Serial || got.RenewedFrom != second.Serial {
		t.Errorf("the live renewal's lineage %q / renewed_from %q changed; want %q / %q", got.Lineage, got.RenewedFrom, first.Serial, second.Serial)
	}
	// The lineage's enrollment provenance outlives its first certificate:
	// renewal's policy re-check reads it.
	if len(got.Origin) == 0 {
		t.Error("the live renewal lost its lineage's enrollment provenance when the first certificate was pruned")
	}
	page, _, err := s.ListCertificates(ctx, store.CertificateFilter{Lineage: first.Serial})
	if err != nil {
		t.Fatalf("listing a lineage whose first certificate was pruned: %v", err)
	}
	if len(page) != 1 || page[0].Serial != third.Serial {
		t.Errorf("lineage %s lists %d certificates, want only %s", first.Serial, len(page), third.Serial)
	}
	page, _, err = s.ListCertificates(ctx, store.CertificateFilter{Identity: id})
	if err != nil || len(page) != 1 {
		t.Errorf("identity listing after the prune: %d certificates, %v; want 1", len(page), err)
	}
	// The live renewal can still be renewed and revoked with its descendants.
	fourth := leaf("a", id, t0.Add(4*time.Hour), time.Hour)
	fourth.RenewedFrom = third.Serial
	mustRecord(t, s, fourth)
	revoked, _, err := s.RevokeMany(ctx, store.RevokeScope{Serial: third.Serial, Descendants: true}, t0.Add(4*time.Hour), "keyCompromise", auditFor("revoke", "", t0.Add(4*time.Hour)))
	if err != nil || len(revoked) != 2 {
		t.Errorf("RevokeMany of the live lineage after the prune: %d revoked, %v; want 2", len(revoked), err)
	}
	// With its last certificate the lineage's row goes too.
	if n := tableRows(t, s, "lineages"); n != 1 {
		t.Errorf("%d lineage rows while the lineage lives, want 1", n)
	}
	if n, err := s.PruneExpiredCertificates(ctx, t0.Add(100*time.Hour), 100); err != nil || n != 2 {
		t.Fatalf("PruneExpiredCertificates of the rest = %d, %v; want 2", n, err)
	}
	if n := tableRows(t, s, "lineages"); n != 0 {
		t.Errorf("%d lineage rows after the lineage's last certificate was pruned, want 0", n)
	}
}

// tableRows is RetentionStats' row count of one table (exact on the small
// tables of these tests).
func tableRows(t *testing.T, s store.Store, table string) int64 {
	t.Helper()
	st, err := s.RetentionStats(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range st.Tables {
		if ts.Table == table {
			return ts.Rows
		}
	}
	t.Fatalf("RetentionStats has no table %q", table)
	return 0
}

func testPruneHolds(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	place := func(id string, at time.Time, d time.Duration) store.Hold {
		t.Helper()
		h, _, err := s.PlaceHold(ctx, store.Hold{SPIFFEID: id, Reason: "keyCompromise", PlacedBy: "corp-idp:alice", PlacedAt: at, Until: at.Add(d)}, auditFor("hold", id, at))
		if err != nil {
			t.Fatalf("PlaceHold(%s): %v", id, err)
		}
		return h
	}
	place("spiffe://example.org/ended", t0, time.Hour)         // ended t0+1h
	place("spiffe://example.org/released", t0, 100*time.Hour)  // released t0+30m
	place("spiffe://example.org/in-force", t0, 100*time.Hour)  // in force
	place("spiffe://example.org/ended-late", t0, 10*time.Hour) // ended t0+10h: after the cut-off
	if _, _, err := s.ReleaseHolds(ctx, "spiffe://example.org/released", t0.Add(30*time.Minute), "corp-idp:bob", auditFor("release", "x", t0.Add(30*time.Minute))); err != nil {
		t.Fatal(err)
	}
	cut := t0.Add(5 * time.Hour)
	total, _ := pruneAll(t, "PruneEndedHolds", 1, func(limit int) (int64, error) {
		return s.PruneEndedHolds(ctx, cut, limit)
	})
	if total != 2 {
		t.Fatalf("pruned %d holds, want 2 (the ended and the released one)", total)
	}
	if _, err := s.ActiveHold(ctx, "spiffe://example.org/in-force", t0.Add(6*time.Hour)); err != nil {
		t.Errorf("the hold in force was pruned: %v", err)
	}
	all, err := s.ActiveHolds(ctx, t0.Add(5*time.Hour), 0)
	if err != nil || len(all) != 2 {
		t.Errorf("holds in force at the cut-off after the prune: %d, %v; want 2", len(all), err)
	}
}

func testPruneInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for name, prune := range map[string]func(time.Time, int) (int64, error){
		"PruneOCSPResponses":       func(b time.Time, l int) (int64, error) { return s.PruneOCSPResponses(ctx, b, l) },
		"PruneExpiredCertificates": func(b time.Time, l int) (int64, error) { return s.PruneExpiredCertificates(ctx, b, l) },
		"PruneEndedHolds":          func(b time.Time, l int) (int64, error) { return s.PruneEndedHolds(ctx, b, l) },
	} {
		if _, err := prune(time.Time{}, 10); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("%s with a zero cut-off: %v, want ErrInvalidQuery", name, err)
		}
		if _, err := prune(t0, 0); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("%s with limit 0: %v, want ErrInvalidQuery", name, err)
		}
	}
}

func testRetentionStats(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	st, err := s.RetentionStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.OldestNotAfter.IsZero() {
		t.Errorf("oldest NotAfter of an empty store = %s, want zero", st.OldestNotAfter)
	}
	mustIssuer(t, s, "a")
	a := leaf("a", "spiffe://example.org/w", t0, 2*time.Hour)
	b := leaf("a", "spiffe://example.org/w", t0, time.Hour)
	mustRecord(t, s, a)
	mustRecord(t, s, b)
	mustOCSP(t, s, a, t0)
	if st, err = s.RetentionStats(ctx); err != nil {
		t.Fatal(err)
	}
	if !st.OldestNotAfter.Equal(us(b.NotAfter)) {
		t.Errorf("oldest NotAfter = %s, want %s", st.OldestNotAfter, us(b.NotAfter))
	}
	if len(st.Tables) != len(store.RetentionTables) {
		t.Fatalf("stats of %d tables, want %d", len(st.Tables), len(store.RetentionTables))
	}
	want := map[string]int64{"certificates": 2, "ocsp_responses": 1, "audit_log": 2}
	for i, ts := range st.Tables {
		if ts.Table != store.RetentionTables[i] {
			t.Errorf("table %d is %q, want %q", i, ts.Table, store.RetentionTables[i])
		}
		if w, ok := want[ts.Table]; ok && ts.Rows != w {
			t.Errorf("%s has %d rows, want %d", ts.Table, ts.Rows, w)
		}
		if ts.Bytes == 0 || ts.Bytes < -1 {
			t.Errorf("%s has %d bytes, want a size or -1", ts.Table, ts.Bytes)
		}
	}
}

func testPruneAuthzReports(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	minute := time.Date(2031, 3, 4, 5, 0, 0, 0, time.UTC)
	var rows []store.AuthzReportCount
	for i := range 5 {
		rows = append(rows, store.AuthzReportCount{Service: "payments", Minute: minute.Add(time.Duration(i) * time.Minute),
			Source: "spiffe://example.org/prod/orders", Endpoint: "refunds-write", Decision: "allow", Reason: "allowed", Count: 1})
	}
	if _, err := s.AddAuthzReportCounts(ctx, rows, auditFor("authz_report", "payments", minute)); err != nil {
		t.Fatalf("AddAuthzReportCounts: %v", err)
	}
	cut := minute.Add(3 * time.Minute) // minutes 0, 1 and 2 are before it
	total, calls := pruneAll(t, "authz reports", 2, func(limit int) (int64, error) {
		return s.PruneAuthzReportCounts(ctx, cut, limit)
	})
	if total != 3 || calls < 2 {
		t.Errorf("pruned %d rows in %d calls, want 3 in batches of 2", total, calls)
	}
	left, err := s.ListAuthzReportCounts(ctx, "payments", minute.Add(-time.Hour), minute.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 {
		t.Fatalf("%d aggregates left, want the 2 minutes at and after the cut-off", len(left))
	}
	for _, r := range left {
		if r.Minute.Before(cut) {
			t.Errorf("an aggregate of %v, before the cut-off, was kept", r.Minute)
		}
	}
	if _, err := s.PruneAuthzReportCounts(ctx, time.Time{}, 10); !errors.Is(err, store.ErrInvalidQuery) {
		t.Errorf("a zero cut-off: %v, want ErrInvalidQuery", err)
	}
}
