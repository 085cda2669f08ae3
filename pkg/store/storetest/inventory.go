package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RunInventory checks the inventory reads (store.InventoryReader): Denials
// grouping, CertificateStats, and the Repository filter of
// ListCertificates. open returns a new, empty, migrated store.
func RunInventory(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("denials are grouped by action, actor and reason within the window", func(t *testing.T) {
		t.Parallel()
		testDenials(t, open(t))
	})
	t.Run("the repository filter selects by provenance", func(t *testing.T) {
		t.Parallel()
		testRepositoryFilter(t, open(t))
	})
	t.Run("stats count by status, expiry bucket, issuance and denials", func(t *testing.T) {
		t.Parallel()
		testStats(t, open(t))
	})
}

func testStats(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	now := t0.Add(24 * time.Hour)
	for i, life := range []time.Duration{30 * time.Minute, 2 * time.Hour, 2 * time.Hour, 48 * time.Hour, -time.Hour, 10 * 24 * time.Hour} {
		c := leaf("root", "spiffe://example.org/x", now.Add(-time.Duration(i)*time.Hour), time.Hour)
		c.NotAfter = now.Add(life)
		mustRecord(t, s, c)
		if i == 5 {
			if _, _, err := s.RevokeCertificate(ctx, c.Serial, now, "superseded", auditFor("revoke", c.Serial, now)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := s.AppendAudit(ctx, store.AuditEntry{Time: now, Actor: "x", Action: "enroll", Decision: "deny", Reason: "policy_denied"}); err != nil {
		t.Fatal(err)
	}
	st, err := s.CertificateStats(ctx, now, now.Add(-150*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := map[store.CertStatus]int64{store.CertActive: 4, store.CertExpired: 1, store.CertRevoked: 1}
	if !reflect.DeepEqual(st.ByStatus, want) || !reflect.DeepEqual(st.Expiring, []int64{1, 2, 0, 1, 0}) ||
		st.IssuedSince != 3 || st.DeniedSince != 1 {
		t.Errorf("stats %+v", st)
	}
}

func testDenials(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	type ev struct {
		at                      time.Duration
		action, actor, decision string
		reason, target          string
	}
	events := []ev{
		{0, "enroll", "repo:acme/a", "deny", "policy_denied", "old"}, // before the window
		{2 * time.Minute, "enroll", "repo:acme/a", "deny", "policy_denied", "t1"},
		{3 * time.Minute, "enroll", "repo:acme/a", "deny", "token_expired", ""},
		{4 * time.Minute, "renew", "spiffe://example.org/x", "deny", "certificate_revoked", "abc"},
		{5 * time.Minute, "enroll", "repo:acme/a", "deny", "policy_denied", "t2"},
		{6 * time.Minute, "enroll", "repo:acme/b", "allow", "", "ok"},
		{7 * time.Minute, "authz", "anonymous", "deny", "unauthorized", "GET /v1/audit"},
	}
	for i, e := range events {
		_, err := s.AppendAudit(ctx, store.AuditEntry{Time: t0.Add(e.at), Actor: e.actor, Action: e.action, Target: e.target,
			Decision: e.decision, Reason: e.reason, RequestID: fmt.Sprintf("req-%d", i), Details: []byte(fmt.Sprintf(`{"i":%d}`, i))})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Denials(ctx, store.DenialQuery{Since: t0.Add(time.Minute), Actions: []string{"enroll", "renew"}})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Action, Actor, Reason string
		Count                 int64
		First, Last           time.Time
		Target, ReqID, Detail string
	}
	var rows []row
	for _, g := range got {
		rows = append(rows, row{g.Action, g.Actor, g.Reason, g.Count, g.First, g.Last, g.LastTarget, g.LastRequestID, string(g.LastDetails)})
	}
	at := func(d time.Duration) time.Time { return t0.Add(d).UTC().Truncate(time.Microsecond) }
	want := []row{
		{"enroll", "repo:acme/a", "policy_denied", 2, at(2 * time.Minute), at(5 * time.Minute), "t2", "req-4", `{"i":4}`},
		{"renew", "spiffe://example.org/x", "certificate_revoked", 1, at(4 * time.Minute), at(4 * time.Minute), "abc", "req-3", `{"i":3}`},
		{"enroll", "repo:acme/a", "token_expired", 1, at(3 * time.Minute), at(3 * time.Minute), "", "req-2", `{"i":2}`},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("denials:\n got %+v\nwant %+v", rows, want)
	}
	all, err := s.Denials(ctx, store.DenialQuery{Since: t0, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Action != "authz" || all[1].Count != 3 {
		t.Errorf("all actions, limit 2: %+v", all)
	}
}

func testRepositoryFilter(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustIssuer(t, s, "root")
	var want []string
	for i, repo := range []string{"acme/payments", "acme/ledger", "acme/payments", "", "acme/payments_x"} {
		c := leaf("root", "spiffe://example.org/ci/"+repo, t0.Add(time.Duration(i)*time.Minute), time.Hour)
		if repo != "" {
			c.Provenance = []byte(`{"token_issuer":"gh","claims":{"repository":"` + repo + `","ref":"refs/heads/main"}}`)
			c.Repository = repo
		}
		mustRecord(t, s, c)
		if repo == "acme/payments" {
			want = append([]string{c.Serial}, want...)
		}
	}
	page, _, err := s.ListCertificates(ctx, store.CertificateFilter{Repository: "acme/payments"})
	if err != nil {
		t.Fatal(err)
	}
	if got := serials(page); !reflect.DeepEqual(got, want) {
		t.Errorf("repository acme/payments: %v, want %v", got, want)
	}

	// A renewal inherits its lineage's repository: the search finds it.
	r := leaf("root", "spiffe://example.org/ci/acme/payments", t0.Add(time.Hour), time.Hour)
	r.Provenance, r.RenewedFrom = []byte(`{"shape":"renewal"}`), want[0]
	mustRecord(t, s, r)
	page, _, err = s.ListCertificates(ctx, store.CertificateFilter{Repository: "acme/payments"})
	if err != nil {
		t.Fatal(err)
	}
	if got := serials(page); !reflect.DeepEqual(got, append([]string{r.Serial}, want...)) {
		t.Errorf("repository acme/payments after a renewal: %v, want %v first", got, r.Serial)
	}
}
