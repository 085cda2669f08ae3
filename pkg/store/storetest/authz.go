package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RunAuthz runs the conformance tests of store.AuthzStore: emergency
// overrides (two-person approval, conditional state changes, expiry by the
// caller's clock) and per-minute decision report aggregates. open is as for
// Run.
func RunAuthz(t *testing.T, open func(t *testing.T) store.Store) {
	suites := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"an override is pending until a different actor approves it, then active until it expires", testOverrideLifecycle},
		{"the requester cannot approve their own override, and nothing is audited", testOverrideSameActor},
		{"only a pending override can be approved", testOverrideApproveConflicts},
		{"ending an override stops it and needs one pending or active", testOverrideEnd},
		{"malformed overrides and ttls over 24h are refused", testOverrideInvalid},
		{"listing overrides is newest first and active ones are per service", testOverrideList},
		{"report counts add up per minute and list by service and range", testReportCounts},
		{"malformed report counts are refused, all or nothing", testReportCountsInvalid},
	}
	for _, sc := range suites {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, open(t))
		})
	}
}

func override(id string, at time.Time) store.AuthzOverride {
	return store.AuthzOverride{
		ID:          id,
		Source:      "spiffe://example.org/prod/reporting",
		Service:     "payments",
		Endpoint:    "refunds-write",
		Reason:      "incident 42: reporting backfills refunds",
		TTL:         2 * time.Hour,
		RequestedBy: "corp-idp:alice",
		RequestedAt: at,
	}
}

func mustRequest(t *testing.T, s store.Store, o store.AuthzOverride) store.AuthzOverride {
	t.Helper()
	out, _, err := s.RequestAuthzOverride(ctxT(t), o, auditFor("authz_override_request", o.ID, o.RequestedAt))
	if err != nil {
		t.Fatalf("RequestAuthzOverride(%s): %v", o.ID, err)
	}
	return out
}

func testOverrideLifecycle(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	before := len(allAudit(t, s))
	o, entry, err := s.RequestAuthzOverride(ctx, override("ovr-1", t0), auditFor("authz_override_request", "ovr-1", t0))
	if err != nil {
		t.Fatalf("RequestAuthzOverride: %v", err)
	}
	if entry.Seq == 0 || entry.Action != "authz_override_request" {
		t.Errorf("request appended %+v", entry)
	}
	if o.ID != "ovr-1" || o.TTL != 2*time.Hour || !o.RequestedAt.Equal(us(t0)) || o.RequestedAt.Location() != time.UTC ||
		!o.ApprovedAt.IsZero() || o.ApprovedBy != "" || !o.Until.IsZero() || !o.EndedAt.IsZero() {
		t.Errorf("requested override = %+v", o)
	}
	if st := o.State(t0.Add(time.Hour)); st != store.OverridePending {
		t.Errorf("state after request = %s, want pending", st)
	}
	if act, err := s.ActiveAuthzOverrides(ctx, "payments", t0.Add(time.Minute)); err != nil || len(act) != 0 {
		t.Errorf("a pending override is listed active: %v, %v", act, err)
	}

	approveAt := t0.Add(10 * time.Minute)
	o, entry, err = s.ApproveAuthzOverride(ctx, "ovr-1", "corp-idp:bob", approveAt, auditFor("authz_override_approve", "ovr-1", approveAt))
	if err != nil {
		t.Fatalf("ApproveAuthzOverride: %v", err)
	}
	if entry.Action != "authz_override_approve" {
		t.Errorf("approve appended %+v", entry)
	}
	wantUntil := us(approveAt).Add(2 * time.Hour)
	if o.ApprovedBy != "corp-idp:bob" || !o.ApprovedAt.Equal(us(approveAt)) || !o.Until.Equal(wantUntil) {
		t.Errorf("approved override = %+v, want approved by bob at %v until %v", o, us(approveAt), wantUntil)
	}
	got, err := s.GetAuthzOverride(ctx, "ovr-1")
	if err != nil || got != o {
		t.Errorf("GetAuthzOverride = %+v, %v; want %+v", got, err, o)
	}
	for _, tc := range []struct {
		at     time.Time
		state  store.AuthzOverrideState
		listed bool
	}{
		{approveAt.Add(time.Minute), store.OverrideActive, true},
		{wantUntil.Add(-time.Microsecond), store.OverrideActive, true},
		{wantUntil, store.OverrideExpired, false},
		{wantUntil.Add(time.Hour), store.OverrideExpired, false},
	} {
		if st := o.State(tc.at); st != tc.state {
			t.Errorf("state at %v = %s, want %s", tc.at, st, tc.state)
		}
		act, err := s.ActiveAuthzOverrides(ctx, "payments", tc.at)
		if err != nil || (len(act) == 1) != tc.listed || len(act) > 1 {
			t.Errorf("ActiveAuthzOverrides at %v = %v, %v; listed want %v", tc.at, act, err, tc.listed)
		}
	}
	if n := len(allAudit(t, s)); n != before+2 {
		t.Errorf("audit log grew by %d entries, want 2", n-before)
	}
	if _, err := s.GetAuthzOverride(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAuthzOverride(unknown) = %v, want ErrNotFound", err)
	}
}

func testOverrideSameActor(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustRequest(t, s, override("ovr-self", t0))
	before := len(allAudit(t, s))
	at := t0.Add(time.Minute)
	_, _, err := s.ApproveAuthzOverride(ctx, "ovr-self", "corp-idp:alice", at, auditFor("authz_override_approve", "ovr-self", at))
	if !errors.Is(err, store.ErrSameActor) || errors.Is(err, store.ErrConflict) {
		t.Fatalf("self-approval = %v, want ErrSameActor", err)
	}
	if n := len(allAudit(t, s)); n != before {
		t.Errorf("a refused approval appended %d entries", n-before)
	}
	got, _ := s.GetAuthzOverride(ctx, "ovr-self")
	if got.State(at) != store.OverridePending {
		t.Errorf("after a refused self-approval the override is %s, want pending", got.State(at))
	}
}

func testOverrideApproveConflicts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	at := t0.Add(time.Minute)
	approve := func(id, by string, at time.Time) error {
		_, _, err := s.ApproveAuthzOverride(ctx, id, by, at, auditFor("authz_override_approve", id, at))
		return err
	}
	if err := approve("missing", "corp-idp:bob", at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("approving an unknown override = %v, want ErrNotFound", err)
	}
	mustRequest(t, s, override("twice", t0))
	if err := approve("twice", "corp-idp:bob", at); err != nil {
		t.Fatalf("first approval: %v", err)
	}
	if err := approve("twice", "corp-idp:carol", at.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second approval = %v, want ErrConflict", err)
	}
	got, _ := s.GetAuthzOverride(ctx, "twice")
	if got.ApprovedBy != "corp-idp:bob" {
		t.Errorf("a refused second approval changed the approver to %q", got.ApprovedBy)
	}
	mustRequest(t, s, override("stale", t0))
	late := t0.Add(store.MaxAuthzOverrideTTL)
	if err := approve("stale", "corp-idp:bob", late); !errors.Is(err, store.ErrConflict) {
		t.Errorf("approving a request older than 24h = %v, want ErrConflict", err)
	}
	if st := (store.AuthzOverride{RequestedAt: t0}).State(late); st != store.OverrideExpired {
		t.Errorf("an unapproved request 24h old is %s, want expired", st)
	}
	mustRequest(t, s, override("ended", t0))
	if _, _, err := s.EndAuthzOverride(ctx, "ended", "corp-idp:alice", at, auditFor("authz_override_end", "ended", at)); err != nil {
		t.Fatalf("EndAuthzOverride(pending): %v", err)
	}
	if err := approve("ended", "corp-idp:bob", at.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("approving an ended override = %v, want ErrConflict", err)
	}
}

func testOverrideEnd(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	end := func(id string, at time.Time) (store.AuthzOverride, error) {
		o, _, err := s.EndAuthzOverride(ctx, id, "corp-idp:carol", at, auditFor("authz_override_end", id, at))
		return o, err
	}
	mustRequest(t, s, override("live", t0))
	approveAt := t0.Add(time.Minute)
	if _, _, err := s.ApproveAuthzOverride(ctx, "live", "corp-idp:bob", approveAt, auditFor("authz_override_approve", "live", approveAt)); err != nil {
		t.Fatalf("approve: %v", err)
	}
	before := len(allAudit(t, s))
	endAt := t0.Add(time.Hour)
	o, err := end("live", endAt)
	if err != nil {
		t.Fatalf("EndAuthzOverride(active): %v", err)
	}
	if o.EndedBy != "corp-idp:carol" || !o.EndedAt.Equal(us(endAt)) || o.State(endAt) != store.OverrideEnded {
		t.Errorf("ended override = %+v (state %s)", o, o.State(endAt))
	}
	if act, _ := s.ActiveAuthzOverrides(ctx, "", endAt.Add(time.Second)); len(act) != 0 {
		t.Errorf("an ended override is still listed active: %+v", act)
	}
	if _, err := end("live", endAt.Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("ending twice = %v, want ErrConflict", err)
	}
	if _, err := end("missing", endAt); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ending an unknown override = %v, want ErrNotFound", err)
	}
	mustRequest(t, s, override("expired", t0))
	if _, _, err := s.ApproveAuthzOverride(ctx, "expired", "corp-idp:bob", approveAt, auditFor("authz_override_approve", "expired", approveAt)); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if _, err := end("expired", approveAt.Add(3*time.Hour)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("ending an expired override = %v, want ErrConflict", err)
	}
	if n := len(allAudit(t, s)); n != before+3 {
		t.Errorf("audit log grew by %d entries, want 3 (one end, one request, one approval; refusals append nothing)", n-before)
	}
}

func testOverrideInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	cases := map[string]func(o *store.AuthzOverride){
		"no id":        func(o *store.AuthzOverride) { o.ID = "" },
		"no source":    func(o *store.AuthzOverride) { o.Source = "" },
		"no service":   func(o *store.AuthzOverride) { o.Service = "" },
		"no endpoint":  func(o *store.AuthzOverride) { o.Endpoint = "" },
		"no requester": func(o *store.AuthzOverride) { o.RequestedBy = "" },
		"no time":      func(o *store.AuthzOverride) { o.RequestedAt = time.Time{} },
		"zero ttl":     func(o *store.AuthzOverride) { o.TTL = 0 },
		"ttl over 24h": func(o *store.AuthzOverride) { o.TTL = store.MaxAuthzOverrideTTL + time.Microsecond },
		"negative ttl": func(o *store.AuthzOverride) { o.TTL = -time.Hour },
	}
	before := len(allAudit(t, s))
	for name, mutate := range cases {
		o := override("bad", t0)
		mutate(&o)
		if _, _, err := s.RequestAuthzOverride(ctx, o, auditFor("authz_override_request", "bad", t0)); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("%s: RequestAuthzOverride = %v, want ErrInvalidQuery", name, err)
		}
	}
	ok := override("max", t0)
	ok.TTL = store.MaxAuthzOverrideTTL
	mustRequest(t, s, ok)
	if _, _, err := s.RequestAuthzOverride(ctx, ok, auditFor("authz_override_request", "max", t0)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a duplicate id = %v, want ErrConflict", err)
	}
	if n := len(allAudit(t, s)); n != before+1 {
		t.Errorf("refused requests appended %d entries", n-before-1)
	}
}

func testOverrideList(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for i, id := range []string{"a", "b", "c"} {
		o := override(id, t0.Add(time.Duration(i)*time.Minute))
		if id == "c" {
			o.Service = "ledger"
			o.TTL = time.Hour
		}
		mustRequest(t, s, o)
		at := t0.Add(5 * time.Minute)
		if id != "b" {
			if _, _, err := s.ApproveAuthzOverride(ctx, id, "corp-idp:bob", at, auditFor("authz_override_approve", id, at)); err != nil {
				t.Fatalf("approve %s: %v", id, err)
			}
		}
	}
	list, err := s.ListAuthzOverrides(ctx, 0)
	if err != nil || len(list) != 3 || list[0].ID != "c" || list[1].ID != "b" || list[2].ID != "a" {
		t.Fatalf("ListAuthzOverrides = %+v, %v; want c, b, a", list, err)
	}
	if two, _ := s.ListAuthzOverrides(ctx, 2); len(two) != 2 {
		t.Errorf("limit 2 gave %d", len(two))
	}
	now := t0.Add(10 * time.Minute)
	pay, err := s.ActiveAuthzOverrides(ctx, "payments", now)
	if err != nil || len(pay) != 1 || pay[0].ID != "a" {
		t.Errorf("active payments overrides = %+v, %v; want a", pay, err)
	}
	all, err := s.ActiveAuthzOverrides(ctx, "", now)
	if err != nil || len(all) != 2 || all[0].ID != "c" || all[1].ID != "a" {
		t.Errorf("active overrides = %+v, %v; want c (ends first), a", all, err)
	}
}

func testReportCounts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	minute := time.Date(2031, 3, 4, 5, 6, 0, 0, time.UTC)
	row := func(at time.Time, source, decision, reason string, n int64) store.AuthzReportCount {
		return store.AuthzReportCount{Service: "payments", Minute: at, Source: source, Endpoint: "refunds-write", Decision: decision, Reason: reason, Count: n}
	}
	const rep, ord = "spiffe://example.org/prod/reporting", "spiffe://example.org/prod/orders"
	before := len(allAudit(t, s))
	if _, err := s.AddAuthzReportCounts(ctx, []store.AuthzReportCount{
		row(minute.Add(10*time.Second), rep, "would_deny", "policy_no_write_permission", 12),
		row(minute.Add(20*time.Second), ord, "allow", "allowed", 3),
	}, auditFor("authz_report", "payments", minute)); err != nil {
		t.Fatalf("AddAuthzReportCounts: %v", err)
	}
	if _, err := s.AddAuthzReportCounts(ctx, []store.AuthzReportCount{
		row(minute.Add(50*time.Second), rep, "would_deny", "policy_no_write_permission", 5),
		row(minute.Add(70*time.Second), rep, "would_deny", "policy_no_write_permission", 1),
		{Service: "ledger", Minute: minute, Source: rep, Endpoint: "x", Decision: "deny", Reason: "policy_no_rule", Count: 9},
	}, auditFor("authz_report", "payments", minute)); err != nil {
		t.Fatalf("AddAuthzReportCounts: %v", err)
	}
	if n := len(allAudit(t, s)); n != before+2 {
		t.Errorf("audit log grew by %d entries, want 2", n-before)
	}
	got, err := s.ListAuthzReportCounts(ctx, "payments", minute, minute.Add(time.Hour), 0)
	if err != nil {
		t.Fatalf("ListAuthzReportCounts: %v", err)
	}
	want := []store.AuthzReportCount{
		row(minute, ord, "allow", "allowed", 3),
		row(minute, rep, "would_deny", "policy_no_write_permission", 17),
		row(minute.Add(time.Minute), rep, "would_deny", "policy_no_write_permission", 1),
	}
	if len(got) != len(want) {
		t.Fatalf("ListAuthzReportCounts = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] || got[i].Minute.Location() != time.UTC {
			t.Errorf("row %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	first, err := s.ListAuthzReportCounts(ctx, "payments", minute.Add(time.Minute), minute.Add(2*time.Minute), 0)
	if err != nil || len(first) != 1 || first[0].Count != 1 {
		t.Errorf("the second minute alone = %+v, %v", first, err)
	}
	if lim, _ := s.ListAuthzReportCounts(ctx, "payments", minute, minute.Add(time.Hour), 1); len(lim) != 1 {
		t.Errorf("limit 1 gave %d rows", len(lim))
	}
	if _, err := s.ListAuthzReportCounts(ctx, "payments", time.Time{}, minute, 0); !errors.Is(err, store.ErrInvalidQuery) {
		t.Errorf("no range = %v, want ErrInvalidQuery", err)
	}
}

func testReportCountsInvalid(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	minute := time.Date(2031, 3, 4, 5, 6, 0, 0, time.UTC)
	good := store.AuthzReportCount{Service: "payments", Minute: minute, Source: "spiffe://example.org/a", Endpoint: "e", Decision: "deny", Reason: "policy_no_rule", Count: 1}
	before := len(allAudit(t, s))
	for name, mutate := range map[string]func(r *store.AuthzReportCount){
		"no service":     func(r *store.AuthzReportCount) { r.Service = "" },
		"no minute":      func(r *store.AuthzReportCount) { r.Minute = time.Time{} },
		"no decision":    func(r *store.AuthzReportCount) { r.Decision = "" },
		"no reason":      func(r *store.AuthzReportCount) { r.Reason = "" },
		"negative count": func(r *store.AuthzReportCount) { r.Count = -1 },
	} {
		bad := good
		mutate(&bad)
		if _, err := s.AddAuthzReportCounts(ctx, []store.AuthzReportCount{good, bad}, auditFor("authz_report", "payments", minute)); !errors.Is(err, store.ErrInvalidQuery) {
			t.Errorf("%s: AddAuthzReportCounts = %v, want ErrInvalidQuery", name, err)
		}
	}
	if got, _ := s.ListAuthzReportCounts(ctx, "payments", minute, minute.Add(time.Hour), 0); len(got) != 0 {
		t.Errorf("a refused batch stored %+v", got)
	}
	if n := len(allAudit(t, s)); n != before {
		t.Errorf("refused batches appended %d entries", n-before)
	}
}
