package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/store"
)

// RunJWTKeys runs the JWT signing key part of the suite; open is as for Run.
func RunJWTKeys(t *testing.T, open func(t *testing.T) store.Store) {
	suites := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"JWT keys move through their lifecycle with audit entries", testJWTKeyLifecycle},
		{"at most one JWT key is active and one prepared", testJWTKeyUniqueness},
		{"an emergency activation retires the old key at once", testJWTKeyEmergency},
		{"JWT key state changes are conditional", testJWTKeyConditional},
		{"concurrent activations of one prepared key act once", testJWTKeyConcurrentActivation},
	}
	for _, sc := range suites {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t, open(t))
		})
	}
}

func jwtKey(kid string, state store.JWTKeyState, at time.Time) store.JWTKey {
	k := store.JWTKey{
		KeyID: kid, KeyURI: "software:jwt-" + kid, Alg: "ES256", State: state,
		PublicJWK: []byte(`{"kty":"EC","crv":"P-256","x":"` + kid + `","y":"y"}`), CreatedAt: at,
	}
	if state == store.JWTKeyActive {
		k.ActivatedAt = at
	}
	return k
}

func jwtAudit(action, kid string, at time.Time) store.AuditEntry {
	return store.AuditEntry{Time: at, Actor: "system", Action: action, Target: "jwt-key/" + kid, Decision: "allow"}
}

func keyStates(t *testing.T, s store.Store) map[string]store.JWTKey {
	t.Helper()
	list, err := s.ListJWTKeys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]store.JWTKey{}
	for _, k := range list {
		m[k.KeyID] = k
	}
	return m
}

func testJWTKeyLifecycle(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if list, err := s.ListJWTKeys(ctx); err != nil || len(list) != 0 {
		t.Fatalf("empty store: ListJWTKeys = %v, %v", list, err)
	}
	first := jwtKey("k1", store.JWTKeyActive, t0)
	e, err := s.InsertJWTKey(ctx, first, jwtAudit("jwt_activate", "k1", t0))
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 1 || e.Action != "jwt_activate" {
		t.Errorf("audit entry of the insert = seq %d action %q", e.Seq, e.Action)
	}
	t1 := t0.Add(time.Hour)
	if _, err := s.InsertJWTKey(ctx, jwtKey("k2", store.JWTKeyPrepared, t1), jwtAudit("jwt_rotate", "k2", t1)); err != nil {
		t.Fatal(err)
	}
	got := keyStates(t, s)
	k1 := got["k1"]
	if k1.State != store.JWTKeyActive || !k1.ActivatedAt.Equal(us(t0)) || !k1.CreatedAt.Equal(us(t0)) ||
		k1.KeyURI != first.KeyURI || k1.Alg != "ES256" || string(k1.PublicJWK) != string(first.PublicJWK) {
		t.Errorf("k1 read back as %+v", k1)
	}
	if k1.CreatedAt.Location() != time.UTC {
		t.Errorf("times are not UTC: %v", k1.CreatedAt.Location())
	}
	if k2 := got["k2"]; k2.State != store.JWTKeyPrepared || !k2.ActivatedAt.IsZero() {
		t.Errorf("k2 read back as %+v", k2)
	}
	list, _ := s.ListJWTKeys(ctx)
	if len(list) != 2 || list[0].KeyID != "k1" || list[1].KeyID != "k2" {
		t.Errorf("ListJWTKeys is not oldest first: %v", list)
	}

	t2 := t1.Add(time.Hour)
	if _, err := s.ActivateJWTKey(ctx, "k2", t2, store.JWTKeyRetiring, jwtAudit("jwt_activate", "k2", t2)); err != nil {
		t.Fatal(err)
	}
	got = keyStates(t, s)
	if k := got["k2"]; k.State != store.JWTKeyActive || !k.ActivatedAt.Equal(us(t2)) {
		t.Errorf("after activation k2 = %+v", k)
	}
	if k := got["k1"]; k.State != store.JWTKeyRetiring || !k.RetiringAt.Equal(us(t2)) || !k.RetiredAt.IsZero() {
		t.Errorf("after activation k1 = %+v", k)
	}
	t3 := t2.Add(time.Hour)
	if _, err := s.RetireJWTKey(ctx, "k1", t3, jwtAudit("jwt_retire", "k1", t3)); err != nil {
		t.Fatal(err)
	}
	if k := keyStates(t, s)["k1"]; k.State != store.JWTKeyRetired || !k.RetiredAt.Equal(us(t3)) {
		t.Errorf("after retirement k1 = %+v", k)
	}
	entries, err := s.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	want := []string{"jwt_activate", "jwt_rotate", "jwt_activate", "jwt_retire"}
	if len(actions) != len(want) {
		t.Fatalf("audit actions = %v, want %v", actions, want)
	}
	for i := range want {
		if actions[i] != want[i] {
			t.Fatalf("audit actions = %v, want %v", actions, want)
		}
	}
}

func testJWTKeyUniqueness(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	steps := []struct {
		name string
		key  store.JWTKey
		want error
	}{
		{"the first active key is recorded", jwtKey("a1", store.JWTKeyActive, t0), nil},
		{"a second active key is a conflict", jwtKey("a2", store.JWTKeyActive, t0), store.ErrConflict},
		{"a taken kid is a conflict", jwtKey("a1", store.JWTKeyPrepared, t0), store.ErrConflict},
		{"a prepared key is recorded", jwtKey("p1", store.JWTKeyPrepared, t0), nil},
		{"a second prepared key is a conflict", jwtKey("p2", store.JWTKeyPrepared, t0), store.ErrConflict},
	}
	for _, st := range steps {
		_, err := s.InsertJWTKey(ctx, st.key, jwtAudit("jwt_rotate", st.key.KeyID, t0))
		if st.want == nil && err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.want != nil {
			wantErr(t, st.name, err, st.want)
		}
	}
	entries, err := s.AuditEntries(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("refused inserts appended audit entries: %d entries, want 2", len(entries))
	}
	if n := len(keyStates(t, s)); n != 2 {
		t.Errorf("%d keys recorded, want 2", n)
	}
}

func testJWTKeyEmergency(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.InsertJWTKey(ctx, jwtKey("old", store.JWTKeyActive, t0), jwtAudit("jwt_activate", "old", t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InsertJWTKey(ctx, jwtKey("new", store.JWTKeyPrepared, t0), jwtAudit("jwt_rotate", "new", t0)); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Minute)
	if _, err := s.ActivateJWTKey(ctx, "new", at, store.JWTKeyRetired, jwtAudit("jwt_rotate", "new", at)); err != nil {
		t.Fatal(err)
	}
	got := keyStates(t, s)
	if k := got["old"]; k.State != store.JWTKeyRetired || !k.RetiringAt.Equal(us(at)) || !k.RetiredAt.Equal(us(at)) {
		t.Errorf("old key after an emergency activation = %+v", k)
	}
	if k := got["new"]; k.State != store.JWTKeyActive {
		t.Errorf("new key after an emergency activation = %+v", k)
	}
	_, err := s.ActivateJWTKey(ctx, "new", at, store.JWTKeyActive, jwtAudit("jwt_activate", "new", at))
	wantErr(t, "the previous key cannot become active", err, store.ErrInvalidQuery)
}

func testJWTKeyConditional(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.InsertJWTKey(ctx, jwtKey("a", store.JWTKeyActive, t0), jwtAudit("jwt_activate", "a", t0)); err != nil {
		t.Fatal(err)
	}
	before, _ := s.AuditEntries(ctx, 0, 0)
	e := jwtAudit("x", "a", t0)
	_, err := s.ActivateJWTKey(ctx, "missing", t0, store.JWTKeyRetiring, e)
	wantErr(t, "activating an unknown key", err, store.ErrNotFound)
	_, err = s.ActivateJWTKey(ctx, "a", t0, store.JWTKeyRetiring, e)
	wantErr(t, "activating the active key", err, store.ErrConflict)
	_, err = s.RetireJWTKey(ctx, "a", t0, e)
	wantErr(t, "retiring the active key", err, store.ErrConflict)
	_, err = s.RetireJWTKey(ctx, "missing", t0, e)
	wantErr(t, "retiring an unknown key", err, store.ErrNotFound)
	after, _ := s.AuditEntries(ctx, 0, 0)
	if len(after) != len(before) {
		t.Errorf("refused changes appended %d audit entries", len(after)-len(before))
	}
	if k := keyStates(t, s)["a"]; k.State != store.JWTKeyActive {
		t.Errorf("refused changes moved the key to %s", k.State)
	}
}

func testJWTKeyConcurrentActivation(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.InsertJWTKey(ctx, jwtKey("cur", store.JWTKeyActive, t0), jwtAudit("jwt_activate", "cur", t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InsertJWTKey(ctx, jwtKey("next", store.JWTKeyPrepared, t0), jwtAudit("jwt_rotate", "next", t0)); err != nil {
		t.Fatal(err)
	}
	const callers = 8
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.ActivateJWTKey(ctx, "next", t0.Add(time.Minute), store.JWTKeyRetiring, jwtAudit("jwt_activate", "next", t0))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	wins := 0
	for err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, store.ErrConflict):
		default:
			t.Errorf("concurrent activation: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent activations succeeded, want exactly 1", wins)
	}
	got := keyStates(t, s)
	if got["next"].State != store.JWTKeyActive || got["cur"].State != store.JWTKeyRetiring {
		t.Errorf("after concurrent activations: next %s, cur %s", got["next"].State, got["cur"].State)
	}
	entries, _ := s.AuditEntries(ctx, 0, 0)
	if len(entries) != 3 {
		t.Errorf("%d audit entries, want 3 (two inserts, one activation)", len(entries))
	}
}
