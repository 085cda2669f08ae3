package hold_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hold"
	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestHoldsApplyUntilTheyEndOrAreReleased(t *testing.T) {
	ctx := context.Background()
	st := testkit.SQLite(t)
	clk := clock.NewFake(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	reg := prometheus.NewRegistry()
	h, err := hold.New(st, clk, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	const id = "spiffe://example.org/prod/payments"
	if err := h.Check(ctx, id); err != nil {
		t.Fatalf("Check before any hold: %v", err)
	}
	placed, err := h.Place(ctx, hold.Request{SPIFFEID: id, Duration: 2 * time.Hour, Reason: "keyCompromise", Actor: "corp-idp:rita", RequestID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if !placed.Until.Equal(clk.Now().Add(2*time.Hour)) || placed.PlacedBy != "corp-idp:rita" {
		t.Errorf("placed %+v", placed)
	}
	err = h.Check(ctx, id)
	var oh *hold.OnHoldError
	if !errors.Is(err, hold.ErrOnHold) || !errors.As(err, &oh) || oh.Reason != "keyCompromise" || !oh.Until.Equal(placed.Until) {
		t.Fatalf("Check under a hold = %v", err)
	}
	if err := h.Check(ctx, id+"-other"); err != nil {
		t.Errorf("a hold on %s holds another identity: %v", id, err)
	}
	if got := gathered(t, reg, "ca_identity_hold_refusals_total"); got != 1 {
		t.Errorf("refusals = %v, want 1", got)
	}
	if _, err := h.Place(ctx, hold.Request{SPIFFEID: id, Duration: time.Hour, Reason: "keyCompromise", Actor: "corp-idp:rita"}); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, reg, "ca_identity_holds_active"); got != 1 {
		t.Errorf("ca_identity_holds_active = %v with two holds of one identity, want 1", got)
	}

	// It ends by the clock.
	clk.Advance(2 * time.Hour)
	if err := h.Check(ctx, id); err != nil {
		t.Errorf("Check at the hold's end: %v", err)
	}
	if _, err := h.Release(ctx, id, "corp-idp:ada", "r2", ""); !errors.Is(err, hold.ErrNotHeld) {
		t.Errorf("releasing an ended hold: %v, want ErrNotHeld", err)
	}
	// Or by a release, which is audited.
	if _, err := h.Place(ctx, hold.Request{SPIFFEID: id, Duration: time.Hour, Reason: "unspecified", Actor: "corp-idp:rita"}); err != nil {
		t.Fatal(err)
	}
	list, err := h.Release(ctx, id, "corp-idp:ada", "r3", "v1")
	if err != nil || len(list) != 1 {
		t.Fatalf("Release = %+v, %v", list, err)
	}
	if err := h.Check(ctx, id); err != nil {
		t.Errorf("Check after the release: %v", err)
	}
	entries, err := st.AuditEntries(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, e := range entries {
		acts = append(acts, e.Action+":"+e.Target+":"+e.Actor)
	}
	want := "identity_hold:" + id + ":corp-idp:rita identity_hold:" + id + ":corp-idp:rita identity_hold:" + id + ":corp-idp:rita identity_release:" + id + ":corp-idp:ada"
	if strings.Join(acts, " ") != want {
		t.Errorf("audit = %v, want %s", acts, want)
	}
}

func TestHoldDurationsAreBounded(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Hour, 59 * time.Second, hold.MaxDuration + time.Nanosecond} {
		if err := hold.ValidateDuration(d); !errors.Is(err, hold.ErrInvalidDuration) {
			t.Errorf("ValidateDuration(%s) = %v, want ErrInvalidDuration", d, err)
		}
	}
	for _, d := range []time.Duration{hold.MinDuration, 24 * time.Hour, hold.MaxDuration} {
		if err := hold.ValidateDuration(d); err != nil {
			t.Errorf("ValidateDuration(%s) = %v", d, err)
		}
	}
	h, err := hold.New(testkit.SQLite(t), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Place(context.Background(), hold.Request{SPIFFEID: "spiffe://example.org/x", Duration: 31 * 24 * time.Hour, Actor: "a"}); !errors.Is(err, hold.ErrInvalidDuration) {
		t.Errorf("a 31-day hold: %v", err)
	}
}

func TestAHoldThatCannotBeCheckedRefuses(t *testing.T) {
	h, err := hold.New(failingStore{}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Check(context.Background(), "spiffe://example.org/x"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Check with the store down = %v, want an error wrapping ErrUnavailable (fail closed)", err)
	}
	var none *hold.Holds
	if err := none.Check(context.Background(), "spiffe://example.org/x"); err != nil {
		t.Errorf("a nil *Holds checks nothing, got %v", err)
	}
}

// failingStore is a store whose database is down.
type failingStore struct{ hold.Store }

func (failingStore) ActiveHold(context.Context, string, time.Time) (store.Hold, error) {
	return store.Hold{}, store.ErrUnavailable
}

// gathered is the value of the one series of a counter or gauge in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s not exposed as one series", name)
	return 0
}
