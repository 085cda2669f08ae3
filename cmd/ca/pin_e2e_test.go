package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
)

// readyReason is /readyz's status and problem reason ("" when ready).
func readyReason(t *testing.T, s *servingCA) (int, string) {
	t.Helper()
	res, raw := get(t, &http.Client{Timeout: 30 * time.Second}, s.publicURL+"/readyz")
	if res.StatusCode == http.StatusOK {
		return res.StatusCode, ""
	}
	var p struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(raw, &p)
	return res.StatusCode, p.Reason
}

// TestARefusedPINIsTriedOncePerSIGHUP: the real `ca serve` on Postgres and
// SoftHSM; the token's PIN is changed by another process, then the token is
// lost and comes back, so the server must log in again with its stale PIN.
// SoftHSM refuses it once; the server, busy with its background work and
// readiness probes, makes no further login attempt (one refusal in its log)
// and /readyz says hsm_pin_refused; each SIGHUP allows exactly one more
// attempt; with the PIN put back, a SIGHUP brings it back to ready.
func TestARefusedPINIsTriedOncePerSIGHUP(t *testing.T) {
	tool, err := exec.LookPath("pkcs11-tool")
	if err != nil {
		t.Skipf("pkcs11-tool (OpenSC) is needed to change the token's PIN: %v", err)
	}
	tok := testkit.NewSoftHSMToken(t)
	vars := map[string]string{
		"CA_DATABASE_URL":  testkit.PostgresURL(t),
		"CA_PKCS11_MODULE": tok.Config.Module,
		"CA_PKCS11_TOKEN":  tok.Config.TokenLabel,
		"CA_PKCS11_PIN":    tok.Config.PIN,
		"CA_TRUST_DOMAIN":  "prod.example",
	}
	if out, errOut, code := runCA(t, vars, "init"); code != 0 {
		t.Fatalf("ca init: %d %s%s", code, out, errOut)
	}
	s := startServe(t, vars)
	if code, reason := readyReason(t, s); code != 200 {
		t.Fatalf("readyz at start: %d %s", code, reason)
	}
	changePIN := func(from, to string) {
		t.Helper()
		if out, err := exec.Command(tool, "--module", tok.Config.Module, "--token-label", tok.Config.TokenLabel,
			"--login", "--pin", from, "--change-pin", "--new-pin", to).CombinedOutput(); err != nil {
			t.Fatalf("pkcs11-tool --change-pin: %v\n%s", err, out)
		}
	}
	// Each login the token refuses is one hsm log line (a latched refusal
	// is quoted by later errors, but not logged as a new one).
	refusals := func() int { return strings.Count(s.stderr.String(), `"msg":"PKCS#11 token refused the PIN`) }
	// until polls /readyz (another process's state) until cond holds.
	until := func(what string, cond func(code int, reason string) bool) {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, what, func() error {
			code, reason := readyReason(t, s)
			if !cond(code, reason) {
				return fmt.Errorf("readyz still %d %s", code, reason)
			}
			return nil
		})
	}
	// holds checks for a while that no further login is attempted, while
	// probes and the server's background work keep using the key store.
	holds := func(want int) {
		t.Helper()
		end := time.Now().Add(3 * time.Second)
		for time.Now().Before(end) {
			if code, reason := readyReason(t, s); code != 503 || reason != "hsm_pin_refused" {
				t.Fatalf("readyz %d %s, want 503 hsm_pin_refused", code, reason)
			}
			time.Sleep(100 * time.Millisecond) // polling another process
		}
		if got := refusals(); got != want {
			t.Fatalf("%d refused logins in the log, want %d:\n%s", got, want, s.stderr)
		}
	}

	stale := tok.Config.PIN
	changePIN(stale, "rotated-"+stale)
	away := filepath.Join(filepath.Dir(filepath.Dir(tok.Dir)), "away-"+filepath.Base(tok.Dir))
	if err := os.Rename(tok.Dir, away); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = os.Rename(away, tok.Dir)
		}
	})
	until("token away", func(code int, _ string) bool { return code == 503 })
	if err := os.Rename(away, tok.Dir); err != nil {
		t.Fatal(err)
	}
	restored = true
	until("token back with another PIN", func(_ int, reason string) bool { return reason == "hsm_pin_refused" })
	holds(1)

	// SIGHUP: exactly one more attempt, refused again.
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyTrue(t, 30*time.Second, "a login attempt after SIGHUP", func() bool {
		readyReason(t, s)
		return refusals() >= 2
	})
	holds(2)

	// The PIN is put back; SIGHUP; ready again.
	changePIN("rotated-"+stale, stale)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	until("PIN restored and SIGHUP", func(code int, _ string) bool { return code == 200 })
	if refusals() != 2 {
		t.Errorf("%d refused logins in the end, want 2", refusals())
	}
	s.stop(t)
	if strings.Contains(s.stderr.String(), stale) {
		t.Error("the PIN appears in the log")
	}
}
