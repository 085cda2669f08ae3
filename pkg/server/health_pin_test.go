package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// TestReadyzSaysTheTokenRefusedThePIN: a key store that stopped logging in
// after a refused PIN makes /readyz a 503 hsm_pin_refused that says how to
// recover, not a generic hsm_unavailable to wait out.
func TestReadyzSaysTheTokenRefusedThePIN(t *testing.T) {
	f := newFixture(t)
	f.hsm.set(fmt.Errorf("hsm: %w: token \"ca\": no login is attempted until a reload or restart", hsm.ErrPINRefused), 0)
	rec := httptest.NewRecorder()
	f.routes.API().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", rec.Code)
	}
	p := decodeProblem(t, rec.Result())
	if p.Reason != ReasonHSMPINRefused || !strings.Contains(p.Detail, "SIGHUP") {
		t.Errorf("problem %+v, want reason hsm_pin_refused with a detail naming SIGHUP", p)
	}
}

// TestReadyzSaysPINRefusedOnARealToken: a SoftHSM token whose user PIN is
// changed under a running key store, then lost and brought back (its
// directory moved away and back, as in the hsm outage test), refuses the
// stale PIN at the reconnect; /readyz over that real key store says
// hsm_pin_refused, and keeps saying it without another login.
//
// Not parallel: the reconnect must finalise and re-initialise the module,
// which needs no other context on it in this process.
func TestReadyzSaysPINRefusedOnARealToken(t *testing.T) {
	tool, err := exec.LookPath("pkcs11-tool")
	if err != nil {
		t.Skipf("pkcs11-tool (OpenSC) is needed to change the token's PIN: %v", err)
	}
	tok := testkit.NewSoftHSMToken(t)
	cfg := tok.Config
	cfg.MinBackoff, cfg.MaxBackoff = time.Second, 2*time.Second
	hclk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	ks, err := hsm.OpenPKCS11(cfg, slog.New(slog.DiscardHandler), hsm.WithClock(hclk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	ctx := context.Background()
	if _, err := ks.Generate(ctx, "issuing-ca", hsm.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, func(_ *fixture, d *Deps) { d.Keys = ks; d.ReadyTimeout = 20 * time.Second })
	readyz := func() (int, Reason) {
		f.clock.Advance(readyCacheFor) // past the readiness cache: a fresh check each time
		rec := httptest.NewRecorder()
		f.routes.API().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code == http.StatusOK {
			return rec.Code, ""
		}
		return rec.Code, decodeProblem(t, rec.Result()).Reason
	}
	if code, reason := readyz(); code != 200 {
		t.Fatalf("readyz before: %d %s", code, reason)
	}

	newPIN := "changed-" + cfg.PIN
	if out, err := exec.Command(tool, "--module", cfg.Module, "--token-label", cfg.TokenLabel,
		"--login", "--pin", cfg.PIN, "--change-pin", "--new-pin", newPIN).CombinedOutput(); err != nil {
		t.Fatalf("pkcs11-tool --change-pin: %v\n%s", err, out)
	}
	away := filepath.Join(filepath.Dir(filepath.Dir(tok.Dir)), "away-"+filepath.Base(tok.Dir))
	if err := os.Rename(tok.Dir, away); err != nil {
		t.Fatal(err)
	}
	if code, reason := readyz(); code != 503 || reason != ReasonHSMUnavailable {
		t.Fatalf("readyz while the token is away: %d %s, want 503 hsm_unavailable", code, reason)
	}
	if err := os.Rename(away, tok.Dir); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		hclk.Advance(10 * cfg.MaxBackoff)
		if code, reason := readyz(); code != 503 || reason != ReasonHSMPINRefused {
			t.Fatalf("readyz %d after the token is back with another PIN: %d %s, want 503 hsm_pin_refused", i, code, reason)
		}
	}
	if !ks.PINRefused() {
		t.Error("the key store does not report the refusal")
	}
}
