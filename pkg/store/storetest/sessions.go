package storetest

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

func dashSession(hash string, created time.Time, lifetime, idle time.Duration) store.DashboardSession {
	return store.DashboardSession{
		IDHash: hash, Actor: "corp-idp:alice", TokenIssuer: "corp-idp",
		Claims:    json.RawMessage(`{"sub":"alice","groups":["pki-revokers"],"n":1.5}`),
		CreatedAt: created, ExpiresAt: created.Add(lifetime), IdleExpiresAt: created.Add(idle),
	}
}

func sameSession(t *testing.T, what string, got, want store.DashboardSession) {
	t.Helper()
	var gc, wc any
	if err := json.Unmarshal(got.Claims, &gc); err != nil {
		t.Fatalf("%s: stored claims %q are not JSON: %v", what, got.Claims, err)
	}
	_ = json.Unmarshal(want.Claims, &wc)
	if !reflect.DeepEqual(gc, wc) {
		t.Errorf("%s: claims %s, want %s", what, got.Claims, want.Claims)
	}
	got.Claims, want.Claims = nil, nil
	want.CreatedAt, want.ExpiresAt, want.IdleExpiresAt = us(want.CreatedAt), us(want.ExpiresAt), us(want.IdleExpiresAt)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: session differs:\n got %+v\nwant %+v", what, got, want)
	}
}

func testSessions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a := dashSession("aa01", t0, 8*time.Hour, 30*time.Minute)
	if err := s.CreateSession(ctx, a); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	got, err := s.GetSession(ctx, a.IDHash, t0.Add(time.Minute))
	if err != nil {
		t.Fatalf("GetSession of a fresh session: %v", err)
	}
	sameSession(t, "a fresh session reads back", got, a)

	dup := dashSession("aa01", t0, time.Hour, time.Minute)
	dup.Actor = "someone-else"
	wantErr(t, "a taken ID hash is a conflict", s.CreateSession(ctx, dup), store.ErrConflict)
	if got, _ := s.GetSession(ctx, a.IDHash, t0); got.Actor != a.Actor {
		t.Errorf("the conflicting create changed the session: actor %q", got.Actor)
	}

	_, err = s.GetSession(ctx, "unknown", t0)
	wantErr(t, "an unknown session is not found", err, store.ErrNotFound)

	// Idle timeout: not used for 30 minutes, it is gone.
	_, err = s.GetSession(ctx, a.IDHash, t0.Add(30*time.Minute))
	wantErr(t, "a session idle until its idle end is not found", err, store.ErrNotFound)
	wantErr(t, "an idle-expired session cannot be touched back to life",
		s.TouchSession(ctx, a.IDHash, t0.Add(30*time.Minute), t0.Add(time.Hour)), store.ErrNotFound)

	// Touching moves the idle end, never past the absolute end, never back.
	b := dashSession("bb02", t0, time.Hour, 30*time.Minute)
	if err := s.CreateSession(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSession(ctx, b.IDHash, t0.Add(20*time.Minute), t0.Add(50*time.Minute)); err != nil {
		t.Fatalf("TouchSession: %v", err)
	}
	if got, err := s.GetSession(ctx, b.IDHash, t0.Add(40*time.Minute)); err != nil || !got.IdleExpiresAt.Equal(us(t0.Add(50*time.Minute))) {
		t.Errorf("after a touch, at +40m: %+v, %v; want valid with idle end +50m", got, err)
	}
	if err := s.TouchSession(ctx, b.IDHash, t0.Add(41*time.Minute), t0.Add(45*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, b.IDHash, t0.Add(41*time.Minute)); !got.IdleExpiresAt.Equal(us(t0.Add(50 * time.Minute))) {
		t.Errorf("a touch with an earlier idle end moved it back to %v", got.IdleExpiresAt)
	}
	if err := s.TouchSession(ctx, b.IDHash, t0.Add(45*time.Minute), t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetSession(ctx, b.IDHash, t0.Add(59*time.Minute))
	if err != nil || !got.IdleExpiresAt.Equal(us(b.ExpiresAt)) {
		t.Errorf("a touch past the absolute end: %+v, %v; want the idle end capped at %v", got, err, b.ExpiresAt)
	}
	_, err = s.GetSession(ctx, b.IDHash, t0.Add(time.Hour))
	wantErr(t, "a session at its absolute end is not found", err, store.ErrNotFound)

	// Created with an idle end past the absolute end: capped.
	c := dashSession("cc03", t0, 10*time.Minute, time.Hour)
	if err := s.CreateSession(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSession(ctx, c.IDHash, t0); err != nil || !got.IdleExpiresAt.Equal(us(c.ExpiresAt)) {
		t.Errorf("created with idle end after the absolute end: %+v, %v; want it capped", got, err)
	}

	// Logout ends it for good.
	d := dashSession("dd04", t0, 8*time.Hour, 8*time.Hour)
	d.Dev, d.TokenIssuer, d.Actor, d.Claims = true, "", "local-admin", nil
	if err := s.CreateSession(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetSession(ctx, d.IDHash, t0)
	if err != nil || !got.Dev || got.TokenIssuer != "" {
		t.Fatalf("dev session: %+v, %v", got, err)
	}
	d.Claims = json.RawMessage(`{}`)
	sameSession(t, "a session without claims reads back with {}", got, d)
	if err := s.DeleteSession(ctx, d.IDHash); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	_, err = s.GetSession(ctx, d.IDHash, t0)
	wantErr(t, "a deleted session is not found", err, store.ErrNotFound)
	wantErr(t, "deleting it again is not found", s.DeleteSession(ctx, d.IDHash), store.ErrNotFound)
	wantErr(t, "a deleted session cannot be touched", s.TouchSession(ctx, d.IDHash, t0, t0.Add(time.Hour)), store.ErrNotFound)

	// Pruning deletes exactly the expired ones: a (idle end +30m), b (+1h
	// absolute), c (+10m); e stays.
	e := dashSession("ee05", t0, 8*time.Hour, 2*time.Hour)
	if err := s.CreateSession(ctx, e); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneSessions(ctx, t0.Add(time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("PruneSessions(+1h) = %d, %v; want 3", n, err)
	}
	if _, err := s.GetSession(ctx, e.IDHash, t0.Add(time.Hour)); err != nil {
		t.Errorf("an unexpired session did not survive pruning: %v", err)
	}
	if n, err := s.PruneSessions(ctx, t0.Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("pruning again = %d, %v; want 0", n, err)
	}
	// The pruned ID hashes can be used again (nothing left behind).
	if err := s.CreateSession(ctx, dashSession("aa01", t0.Add(2*time.Hour), time.Hour, time.Hour)); err != nil {
		t.Errorf("re-creating a pruned session: %v", err)
	}
}
