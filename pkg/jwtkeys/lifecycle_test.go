package jwtkeys_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// TestScheduledRotation walks one key rotation with the fake clock. The
// clock starts 61 minutes before the wall clock, so that the overlap check
// (at start+61m) happens at the wall-clock time go-spiffe validates against.
func TestScheduledRotation(t *testing.T) {
	for _, b := range []backend{sqliteBackend, softhsmBackend} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(hsm.ECDSAP256)
			start := time.Now().Add(-61 * time.Minute).Truncate(time.Second)
			f := newFixture(t, b, cfg, start)
			const id = "spiffe://example.org/svc"

			a := f.tick(t).Activated[0]
			if !f.spiffeBundle(t).HasJWTAuthority(a) {
				t.Fatal("the first key is not in the bundle")
			}
			f.clk.Advance(49 * time.Minute)
			if res := f.tick(t); len(res.Prepared) != 0 {
				t.Fatalf("prepared %v before RotateEvery - PublishLead", res.Prepared)
			}

			f.clk.Advance(time.Minute) // start+50m: RotateEvery - PublishLead
			res := f.tick(t)
			if len(res.Prepared) != 1 || len(res.Activated) != 0 {
				t.Fatalf("at RotateEvery - PublishLead: %+v, want one prepared key", res)
			}
			bkid := res.Prepared[0]
			if !f.spiffeBundle(t).HasJWTAuthority(bkid) {
				t.Fatal("the prepared key is not published")
			}
			if tok := f.sign(t, id, "aud"); tok.KeyID != a {
				t.Fatalf("a prepared key signed: %s", tok.KeyID)
			}

			f.clk.Advance(9 * time.Minute) // start+59m: not published for the lead yet
			if res := f.tick(t); len(res.Activated) != 0 {
				t.Fatalf("activated %v before the publish lead", res.Activated)
			}
			before := f.sign(t, id, "aud")
			if before.KeyID != a {
				t.Fatalf("token before the activation signed by %s, want %s", before.KeyID, a)
			}

			f.clk.Advance(time.Minute) // start+60m
			if res := f.tick(t); len(res.Activated) != 1 || res.Activated[0] != bkid {
				t.Fatalf("after the publish lead: %+v, want %s activated", res, bkid)
			}
			if st := f.states(t); st[a] != store.JWTKeyRetiring || st[bkid] != store.JWTKeyActive {
				t.Fatalf("states after activation: %v", st)
			}
			f.clk.Advance(cfg.Recheck) // the signer notices the activation
			after := f.sign(t, id, "aud")
			if after.KeyID != bkid {
				t.Fatalf("token after the activation signed by %s, want %s", after.KeyID, bkid)
			}

			f.clk.Advance(time.Minute - cfg.Recheck) // start+61m = the wall clock
			overlap := f.spiffeBundle(t)
			for name, tok := range map[string]string{"before": before.Token, "after": after.Token} {
				if _, err := jwtsvid.ParseAndValidate(tok, overlap, []string{"aud"}); err != nil {
					t.Errorf("during the overlap the token signed %s the rotation does not verify: %v", name, err)
				}
			}

			// The retiring key stays until RetiringAt + MaxTTL + Grace.
			f.clk.Set(start.Add(60*time.Minute + cfg.MaxTTL + cfg.Grace - time.Second))
			if res := f.tick(t); len(res.Retired) != 0 {
				t.Fatalf("retired %v while tokens it signed may be valid", res.Retired)
			}
			if !f.spiffeBundle(t).HasJWTAuthority(a) {
				t.Fatal("the retiring key left the bundle early")
			}
			f.clk.Advance(time.Second)
			if res := f.tick(t); len(res.Retired) != 1 || res.Retired[0] != a {
				t.Fatalf("at RetiringAt + MaxTTL + Grace: %+v, want %s retired", res, a)
			}
			gone := f.spiffeBundle(t)
			if gone.HasJWTAuthority(a) || !gone.HasJWTAuthority(bkid) {
				t.Fatalf("bundle after retirement: %v", gone.JWTAuthorities())
			}
			if _, err := jwtsvid.ParseAndValidate(before.Token, gone, []string{"aud"}); err == nil {
				t.Error("a token of the retired key verifies against the bundle without it")
			}
			assertAudited(t, f, []string{jwtkeys.ActionActivate, jwtkeys.ActionRotate, jwtkeys.ActionActivate, jwtkeys.ActionRetire})
		})
	}
}

func TestEmergencyRotationRetiresTheOldKeyAtOnce(t *testing.T) {
	f := newFixture(t, sqliteBackend, testConfig(hsm.ECDSAP256), time.Now())
	old := f.tick(t).Activated[0]
	tok := f.sign(t, "spiffe://example.org/svc", "aud")
	if _, err := jwtsvid.ParseAndValidate(tok.Token, f.spiffeBundle(t), []string{"aud"}); err != nil {
		t.Fatal(err)
	}
	res, err := f.mgr.Rotate(ctxT(t), jwtkeys.RotateOptions{Emergency: true, Actor: "ops@example.org", RequestID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Activated) != 1 || len(res.Retired) != 1 || res.Retired[0] != old || !res.ActivateAfter.IsZero() {
		t.Fatalf("emergency rotation result %+v", res)
	}
	if st := f.states(t); st[old] != store.JWTKeyRetired || st[res.KeyID] != store.JWTKeyActive {
		t.Fatalf("states after the emergency rotation: %v", st)
	}
	b := f.spiffeBundle(t)
	if b.HasJWTAuthority(old) || !b.HasJWTAuthority(res.KeyID) {
		t.Fatalf("bundle after the emergency rotation: %v", b.JWTAuthorities())
	}
	if _, err := jwtsvid.ParseAndValidate(tok.Token, b, []string{"aud"}); err == nil {
		t.Error("an unexpired token of the compromised key still verifies")
	}
	f.clk.Advance(10 * time.Second) // Recheck
	if got := f.sign(t, "spiffe://example.org/svc", "aud"); got.KeyID != res.KeyID {
		t.Errorf("signed by %s after the emergency rotation, want %s", got.KeyID, res.KeyID)
	}
	entries, _ := f.st.AuditEntries(ctxT(t), 0, 1000)
	var rotate, activate bool
	for _, e := range entries {
		if e.Actor == "ops@example.org" && e.RequestID == "r1" {
			rotate = rotate || e.Action == jwtkeys.ActionRotate
			activate = activate || e.Action == jwtkeys.ActionActivate
		}
	}
	if !rotate || !activate {
		t.Errorf("the operator's emergency rotation is not audited (rotate %v, activate %v)", rotate, activate)
	}
}

func TestOperatorRotationActivatesAfterThePublishLead(t *testing.T) {
	cfg := testConfig(hsm.ECDSAP256)
	f := newFixture(t, sqliteBackend, cfg, time.Now())
	old := f.tick(t).Activated[0]
	res, err := f.mgr.Rotate(ctxT(t), jwtkeys.RotateOptions{Actor: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.ActivateAfter.Equal(f.clk.Now().Add(cfg.PublishLead)) || !f.spiffeBundle(t).HasJWTAuthority(res.KeyID) {
		t.Fatalf("rotate result %+v", res)
	}
	if _, err := f.mgr.Rotate(ctxT(t), jwtkeys.RotateOptions{}); !errors.Is(err, jwtkeys.ErrRotationInProgress) {
		t.Errorf("a second rotation: %v, want ErrRotationInProgress", err)
	}
	f.clk.Advance(cfg.PublishLead - time.Second)
	if got := f.tick(t); len(got.Activated) != 0 {
		t.Fatalf("activated before the lead: %v", got.Activated)
	}
	f.clk.Advance(time.Second)
	if got := f.tick(t); len(got.Activated) != 1 || got.Activated[0] != res.KeyID {
		t.Fatalf("after the lead: %+v", got)
	}
	if st := f.states(t); st[old] != store.JWTKeyRetiring {
		t.Errorf("old key is %s, want retiring", st[old])
	}
}

func TestConcurrentTicksOnReplicasCreateOneKey(t *testing.T) {
	url := testkit.PostgresURL(t)
	clk := clock.NewFake(time.Now())
	ks := softwareKeys(t)
	const replicas = 4
	var fixtures []*fixture
	for i := 0; i < replicas; i++ {
		st := openPostgres(t, url)
		fixtures = append(fixtures, newFixtureOn(t, ks, st, testConfig(hsm.ECDSAP256), clk))
	}
	var wg sync.WaitGroup
	for _, f := range fixtures {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				if _, err := f.mgr.Tick(ctxT(t)); err != nil {
					t.Errorf("Tick: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	keys, err := fixtures[0].mgr.Keys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].State != store.JWTKeyActive {
		t.Fatalf("keys after concurrent first ticks: %+v", keys)
	}
}

func assertAudited(t *testing.T, f *fixture, want []string) {
	t.Helper()
	entries, err := f.st.AuditEntries(ctxT(t), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		switch e.Action {
		case jwtkeys.ActionRotate, jwtkeys.ActionActivate, jwtkeys.ActionRetire:
			got = append(got, e.Action)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("key lifecycle audit actions %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("key lifecycle audit actions %v, want %v", got, want)
		}
	}
}
