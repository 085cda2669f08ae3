package lifecycle_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/pkg/lifecycle"
	"github.com/workload-ca/workload-ca/pkg/store"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func TestStatesMatchTheStore(t *testing.T) {
	for _, c := range []struct {
		l     lifecycle.State
		iss   store.IssuerState
		jwtks store.JWTKeyState
	}{
		{lifecycle.Prepared, store.IssuerPrepared, store.JWTKeyPrepared},
		{lifecycle.Active, store.IssuerActive, store.JWTKeyActive},
		{lifecycle.Retiring, store.IssuerRetiring, store.JWTKeyRetiring},
		{lifecycle.Retired, store.IssuerRetired, store.JWTKeyRetired},
	} {
		if string(c.l) != string(c.iss) || string(c.l) != string(c.jwtks) {
			t.Errorf("lifecycle %q, issuer %q, JWT key %q: the same state is spelt differently", c.l, c.iss, c.jwtks)
		}
	}
}

func TestDue(t *testing.T) {
	rule := lifecycle.Rule{Lead: time.Hour, MaxTTL: 10 * time.Minute, Grace: time.Minute, RotateEvery: 24 * time.Hour}
	noSchedule := rule
	noSchedule.RotateEvery = 0
	tests := []struct {
		name  string
		rule  lifecycle.Rule
		key   lifecycle.Key
		after time.Duration // now is t0 plus after
		want  lifecycle.Change
	}{
		{"prepared, not published", rule, lifecycle.Key{State: lifecycle.Prepared, PublishedSince: t0}, 48 * time.Hour, lifecycle.None},
		{"prepared, published for less than Lead", rule, lifecycle.Key{State: lifecycle.Prepared, Published: true, PublishedSince: t0}, time.Hour - time.Nanosecond, lifecycle.None},
		{"prepared, published for Lead", rule, lifecycle.Key{State: lifecycle.Prepared, Published: true, PublishedSince: t0}, time.Hour, lifecycle.Activate},
		{"prepared, published long ago but created late", rule,
			lifecycle.Key{State: lifecycle.Prepared, Published: true, PublishedSince: t0.Add(-48 * time.Hour), Created: t0}, 59 * time.Minute, lifecycle.None},
		{"prepared, created Lead ago", rule,
			lifecycle.Key{State: lifecycle.Prepared, Published: true, PublishedSince: t0.Add(-48 * time.Hour), Created: t0}, time.Hour, lifecycle.Activate},
		{"prepared, created before it was published", rule,
			lifecycle.Key{State: lifecycle.Prepared, Published: true, PublishedSince: t0, Created: t0.Add(-48 * time.Hour)}, 59 * time.Minute, lifecycle.None},
		{"active, before the successor is due", rule, lifecycle.Key{State: lifecycle.Active, ActiveSince: t0}, 23*time.Hour - time.Nanosecond, lifecycle.None},
		{"active, successor due Lead before RotateEvery", rule, lifecycle.Key{State: lifecycle.Active, ActiveSince: t0}, 23 * time.Hour, lifecycle.PrepareSuccessor},
		{"active, no schedule", noSchedule, lifecycle.Key{State: lifecycle.Active, ActiveSince: t0}, 1000 * time.Hour, lifecycle.None},
		{"retiring, within MaxTTL plus Grace", rule, lifecycle.Key{State: lifecycle.Retiring, RetiringSince: t0}, 11*time.Minute - time.Nanosecond, lifecycle.None},
		{"retiring, after MaxTTL plus Grace", rule, lifecycle.Key{State: lifecycle.Retiring, RetiringSince: t0}, 11 * time.Minute, lifecycle.Retire},
		{"retiring, the last thing it signed not yet expired", rule,
			lifecycle.Key{State: lifecycle.Retiring, RetiringSince: t0, LastExpiry: t0.Add(time.Hour)}, time.Hour - time.Nanosecond, lifecycle.None},
		{"retiring, the last thing it signed expired", rule,
			lifecycle.Key{State: lifecycle.Retiring, RetiringSince: t0, LastExpiry: t0.Add(time.Hour)}, time.Hour, lifecycle.Retire},
		{"retiring, an early last expiry does not shorten the wait", rule,
			lifecycle.Key{State: lifecycle.Retiring, RetiringSince: t0, LastExpiry: t0.Add(time.Minute)}, 10 * time.Minute, lifecycle.None},
		{"retired never moves", rule, lifecycle.Key{State: lifecycle.Retired, RetiringSince: t0, Published: true, PublishedSince: t0, ActiveSince: t0}, 1000 * time.Hour, lifecycle.None},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			clk.Advance(tc.after)
			if got := tc.rule.Due(tc.key, clk.Now()); got != tc.want {
				t.Errorf("Due at t0+%s = %s, want %s", tc.after, got, tc.want)
			}
		})
	}
}

// TestDueFollowsTheClock walks one key through its life as a ticker would
// see it, moving a fake clock.
func TestDueFollowsTheClock(t *testing.T) {
	rule := lifecycle.Rule{Lead: time.Hour, MaxTTL: 10 * time.Minute, Grace: time.Minute, RotateEvery: 24 * time.Hour}
	clk := clock.NewFake(t0)
	k := lifecycle.Key{State: lifecycle.Prepared, Published: true, PublishedSince: clk.Now(), Created: clk.Now()}
	step := func(d time.Duration, want lifecycle.Change) {
		t.Helper()
		clk.Advance(d)
		if got := rule.Due(k, clk.Now()); got != want {
			t.Fatalf("%s: Due = %s, want %s", clk.Now().Sub(t0), got, want)
		}
	}
	step(30*time.Minute, lifecycle.None)
	step(30*time.Minute, lifecycle.Activate)
	k.State, k.ActiveSince = lifecycle.Active, clk.Now()
	step(22*time.Hour, lifecycle.None)
	step(time.Hour, lifecycle.PrepareSuccessor)
	k.State, k.RetiringSince = lifecycle.Retiring, clk.Now()
	step(10*time.Minute, lifecycle.None)
	step(time.Minute, lifecycle.Retire)
	k.State = lifecycle.Retired
	step(1000*time.Hour, lifecycle.None)
}

func TestTimes(t *testing.T) {
	rule := lifecycle.Rule{Lead: time.Hour, MaxTTL: 10 * time.Minute, Grace: time.Minute}
	if _, ok := rule.ActivateAt(lifecycle.Key{PublishedSince: t0}); ok {
		t.Error("ActivateAt of an unpublished key is ok")
	}
	if at, ok := rule.ActivateAt(lifecycle.Key{Published: true, PublishedSince: t0}); !ok || !at.Equal(t0.Add(time.Hour)) {
		t.Errorf("ActivateAt = %v, %v; want t0+1h", at, ok)
	}
	if at := rule.RetireAt(lifecycle.Key{RetiringSince: t0}); !at.Equal(t0.Add(11 * time.Minute)) {
		t.Errorf("RetireAt = %v; want t0+11m", at)
	}
	if _, ok := rule.SuccessorAt(lifecycle.Key{ActiveSince: t0}); ok {
		t.Error("SuccessorAt without RotateEvery is ok")
	}
}

func TestEveryTicksAtOnceAndStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		lifecycle.Every(ctx, time.Millisecond, func(context.Context) {
			if n.Add(1) == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	// A tick that fell due as the context ended may still run (select
	// picks at random among ready cases), as with the loops Every replaced.
	if got := n.Load(); got < 3 {
		t.Errorf("ticks = %d, want at least 3", got)
	}
}

func TestEveryTicksOnceWhenTheContextHasEnded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := 0
	lifecycle.Every(ctx, time.Hour, func(context.Context) { n++ })
	if n != 1 {
		t.Errorf("ticks = %d, want 1", n)
	}
}
