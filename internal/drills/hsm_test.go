package drills

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
)

// TestSoftHSMTokenUnavailableDuringLoadAnswersHSMUnavailableAndRecoversWithoutRestart
// takes the SoftHSM token away underneath a loaded `ca serve` and brings it
// back. The outage is made as in pkg/hsm's outage test: the token's own
// directory is moved out of SoftHSM's token directory, so signing fails and a
// reconnect (module finalized and re-initialised by the server's key store)
// finds no token until the directory returns.
func TestSoftHSMTokenUnavailableDuringLoadAnswersHSMUnavailableAndRecoversWithoutRestart(t *testing.T) {
	d := newDrillCA(t, "log:\n  level: warn\nserver:\n  ready_timeout: 1s\n")
	r := d.serve(t)
	l := startLoad(t, d, func() *replica { return r }, 4)
	testkit.Eventually(t, 60*time.Second, "enrollments under load", func() error {
		if n := l.count(issuedOK); n < 20 {
			return fmt.Errorf("%d issued so far", n)
		}
		return nil
	})

	away := filepath.Join(filepath.Dir(filepath.Dir(d.tok.Dir)), "away-"+filepath.Base(d.tok.Dir))
	if err := os.Rename(d.tok.Dir, away); err != nil {
		t.Fatalf("move the token directory away: %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			if err := os.Rename(away, d.tok.Dir); err != nil {
				t.Fatalf("restore the token directory: %v", err)
			}
			restored = true
		}
	}
	t.Cleanup(restore)
	removedAt := time.Now()

	testkit.Eventually(t, 60*time.Second, "503 hsm_unavailable and readiness false", func() error {
		if c := r.readyz(); c == http.StatusOK {
			return fmt.Errorf("readyz still %d", c)
		}
		a := r.enroll(t, d.token(t, "probe", time.Now()))
		if a.status != http.StatusServiceUnavailable || a.reason != "hsm_unavailable" {
			return fmt.Errorf("enroll answered %d %q (%v)", a.status, a.reason, a.err)
		}
		return nil
	})
	unavailable := func(a enrollAnswer) bool { return a.status == http.StatusServiceUnavailable }
	held := l.count(unavailable)
	// Hold the outage for a few seconds, so that several reconnect attempts
	// (backoff from 250ms upward) fail while the load keeps coming.
	testkit.Eventually(t, 60*time.Second, "load answered during the outage", func() error {
		if n := l.count(unavailable); n < held+20 || time.Since(removedAt) < 3*time.Second {
			return fmt.Errorf("%d 503s during the outage", n-held)
		}
		if c := r.readyz(); c == http.StatusOK {
			return fmt.Errorf("readyz %d while the token is away", c)
		}
		return nil
	})
	issuedDuring := l.count(issuedOK)

	restore()
	t.Logf("token away for %v", time.Since(removedAt).Round(time.Millisecond))
	backAt := time.Now()
	// The key store retries with a backoff of at most 30s (hsm.DefaultMaxBackoff).
	testkit.Eventually(t, 90*time.Second, "service resumes by itself", func() error {
		if c := r.readyz(); c != http.StatusOK {
			return fmt.Errorf("readyz %d", c)
		}
		if n := l.count(issuedOK); n < issuedDuring+10 {
			return fmt.Errorf("%d issued since the token came back", n-issuedDuring)
		}
		return nil
	})
	t.Logf("service resumed %v after the token came back", time.Since(backAt).Round(time.Millisecond))
	answers := l.halt()

	// Every answer is a certificate or a 503 hsm_unavailable: never a 500,
	// never another reason, and (checkNothingLost) never a certificate
	// without its record.
	var n503 int
	for _, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("transport error while the server kept running: %v", a.err)
		case a.status == http.StatusCreated:
		case a.status == http.StatusServiceUnavailable && a.reason == "hsm_unavailable":
			n503++
		default:
			t.Errorf("answer %d %q during an HSM outage, want 201 or 503 hsm_unavailable", a.status, a.reason)
		}
	}
	n := checkNothingLost(t, d, answers)
	t.Logf("%d certificates and %d hsm_unavailable answers across the outage; every certificate recorded", n, n503)
}
