//go:build cgo

package hsm_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// changeUserPIN changes the token's user PIN from outside the process, as an
// operator rotating the PIN of a shared token would.
func changeUserPIN(t *testing.T, tok testkit.SoftHSMToken, from, to string) {
	t.Helper()
	tool, err := exec.LookPath("pkcs11-tool")
	if err != nil {
		t.Skipf("pkcs11-tool (OpenSC) is needed to change the token's PIN: %v", err)
	}
	out, err := exec.Command(tool, "--module", tok.Config.Module, "--token-label", tok.Config.TokenLabel,
		"--login", "--pin", from, "--change-pin", "--new-pin", to).CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --change-pin: %v\n%s", err, out)
	}
}

// TestPKCS11RefusedPINIsNotRetriedUntilAReload: the token's PIN changes
// under a running store (another replica's operator rotated it); when the
// store next has to log in, SoftHSM refuses the stale PIN. The store makes
// exactly one login attempt, however many calls and backoff periods follow,
// logs the refusal once, and reports ErrPINRefused (not ErrUnavailable);
// each ReloadLogin allows exactly one more attempt.
//
// Not parallel, like the outage test: the new login must really reach the
// token, which needs the module finalized when the store drops its context
// (as in production, one store per module per process). While another
// context keeps the module initialised, SoftHSM still holds the token's
// login and accepts the stale PIN as already logged in.
func TestPKCS11RefusedPINIsNotRetriedUntilAReload(t *testing.T) {
	tok := testkit.NewSoftHSMToken(t)
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	var logs syncLog
	cfg := tok.Config
	cfg.MinBackoff, cfg.MaxBackoff = time.Second, 4*time.Second
	s, err := hsm.OpenPKCS11(cfg, slog.New(slog.NewTextHandler(&logs, nil)), hsm.WithClock(clk))
	if err != nil {
		t.Fatalf("OpenPKCS11: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if got := hsm.LoginAttempts(s); got != 1 {
		t.Fatalf("login attempts after open = %d, want 1", got)
	}

	changeUserPIN(t, tok, cfg.PIN, "new-pin-"+cfg.PIN)
	hsm.DropConnection(s)
	for i := range 10 {
		err := s.Ping(ctx)
		if !errors.Is(err, hsm.ErrPINRefused) || errors.Is(err, hsm.ErrUnavailable) {
			t.Fatalf("Ping %d with a stale PIN: err = %v, want ErrPINRefused and not ErrUnavailable", i, err)
		}
		clk.Advance(10 * cfg.MaxBackoff) // well past any backoff
	}
	if _, err := s.Generate(ctx, "after-refusal", hsm.ECDSAP256); !errors.Is(err, hsm.ErrPINRefused) {
		t.Fatalf("Generate with a stale PIN: err = %v, want ErrPINRefused", err)
	}
	if got := hsm.LoginAttempts(s); got != 2 {
		t.Fatalf("login attempts after the refusal = %d, want 2 (the open and exactly one refused login)", got)
	}
	if !s.PINRefused() {
		t.Error("PINRefused() = false after the refusal")
	}
	if n := strings.Count(logs.String(), "refused the PIN"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once:\n%s", n, logs.String())
	}

	// A reload allows one attempt; the PIN is still stale, so it is refused
	// again and latched again.
	if !s.ReloadLogin() {
		t.Fatal("ReloadLogin cleared nothing")
	}
	for range 5 {
		if err := s.Ping(ctx); !errors.Is(err, hsm.ErrPINRefused) {
			t.Fatalf("Ping after a reload with the stale PIN: %v", err)
		}
		clk.Advance(10 * cfg.MaxBackoff)
	}
	if got := hsm.LoginAttempts(s); got != 3 {
		t.Fatalf("login attempts after one reload = %d, want 3", got)
	}

	// The PIN is put back; a reload logs in and signing works again.
	changeUserPIN(t, tok, "new-pin-"+cfg.PIN, cfg.PIN)
	s.ReloadLogin()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the PIN is restored and reloaded: %v", err)
	}
	if s.PINRefused() || hsm.LoginAttempts(s) != 4 {
		t.Errorf("after recovery: refused %v, attempts %d (want false, 4)", s.PINRefused(), hsm.LoginAttempts(s))
	}
	if strings.Contains(logs.String(), cfg.PIN) {
		t.Error("the PIN appears in the logs")
	}
}

// syncLog is a log buffer safe for the store's goroutines.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
