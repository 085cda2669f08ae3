package drills

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/audit"
	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// checkNothingLost opens the store and checks that every certificate a
// client received is recorded, byte for byte, with its provenance; that no
// serial was handed out twice; and that the audit chain verifies.
func checkNothingLost(t *testing.T, d *drillCA, answers []enrollAnswer) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := storeopen.Open(ctx, d.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seen := map[string]bool{}
	n := 0
	for _, a := range answers {
		if !issuedOK(a) {
			continue
		}
		n++
		if seen[a.serial] {
			t.Errorf("serial %s was handed out twice", a.serial)
		}
		seen[a.serial] = true
		rec, err := st.GetCertificate(ctx, a.serial)
		if err != nil {
			t.Errorf("certificate %s was returned to a client but is not in the store: %v", a.serial, err)
			continue
		}
		if !bytes.Equal(rec.DER, a.der) {
			t.Errorf("certificate %s: the stored DER is not what the client received", a.serial)
		}
		if len(rec.Provenance) == 0 || rec.PolicyRule == "" {
			t.Errorf("certificate %s recorded without provenance (%q, rule %q)", a.serial, rec.Provenance, rec.PolicyRule)
		}
	}
	rep, err := audit.Verify(ctx, st, audit.Options{})
	if err != nil {
		t.Fatalf("audit chain after the drill: %v", err)
	}
	if rep.Entries < int64(n) {
		t.Errorf("%d audit entries for %d issued certificates", rep.Entries, n)
	}
	return n
}

func TestKill9OfTheServerDuringEnrollmentLoadLosesNoCertificate(t *testing.T) {
	d := newDrillCA(t, "log:\n  level: warn\n")
	var current *replica = d.serve(t)
	target := func() *replica { return current }
	l := startLoad(t, d, target, 6)
	testkit.Eventually(t, 60*time.Second, "enrollments under load", func() error {
		if n := l.count(issuedOK); n < 40 {
			return fmt.Errorf("%d issued so far", n)
		}
		return nil
	})
	// SIGKILL mid-load: requests in flight are cut off; the clients keep
	// trying and get transport errors until the restart.
	current.kill9(t)
	killedAt := l.count(func(enrollAnswer) bool { return true })
	testkit.Eventually(t, 30*time.Second, "clients notice the dead server", func() error {
		if l.count(func(a enrollAnswer) bool { return a.err != nil }) == 0 {
			return errors.New("no transport error yet")
		}
		return nil
	})
	restarted := d.serve(t)
	current = restarted
	testkit.Eventually(t, 60*time.Second, "enrollments after the restart", func() error {
		if n := l.count(issuedOK); n < killedAt+20 {
			return fmt.Errorf("%d issued, %d before the kill", n, killedAt)
		}
		return nil
	})
	answers := l.halt()
	n := checkNothingLost(t, d, answers)
	t.Logf("%d certificates received across a kill -9 and restart; all recorded", n)
}

func TestPostgresStoppedDuringLoadAnswersStoreUnavailableAndRecoversWithoutRestart(t *testing.T) {
	d := newDrillCA(t, "log:\n  level: warn\nserver:\n  ready_timeout: 1s\n")
	r := d.serve(t)
	l := startLoad(t, d, func() *replica { return r }, 4)
	testkit.Eventually(t, 60*time.Second, "enrollments under load", func() error {
		if n := l.count(issuedOK); n < 20 {
			return fmt.Errorf("%d issued so far", n)
		}
		return nil
	})
	d.pg.stop()
	stoppedAt := time.Now()
	testkit.Eventually(t, 60*time.Second, "503 store_unavailable and readiness false", func() error {
		if c := r.readyz(); c == http.StatusOK {
			return fmt.Errorf("readyz still %d", c)
		}
		a := r.enroll(t, d.token(t, "probe", time.Now()))
		if a.status != http.StatusServiceUnavailable || a.reason != "store_unavailable" {
			return fmt.Errorf("enroll answered %d %q (%v)", a.status, a.reason, a.err)
		}
		return nil
	})
	// Hold the outage while the load keeps coming.
	unavailable := func(a enrollAnswer) bool { return a.status == http.StatusServiceUnavailable }
	held := l.count(unavailable)
	testkit.Eventually(t, 60*time.Second, "load answered during the outage", func() error {
		if n := l.count(unavailable); n < held+20 {
			return fmt.Errorf("%d 503s during the outage", n-held)
		}
		return nil
	})
	// Every answer so far is a certificate or a 503: a certificate without a
	// committed record never leaves, and the outage is never a 500.
	other := l.count(func(a enrollAnswer) bool {
		return a.err == nil && a.status != http.StatusCreated && a.status != http.StatusServiceUnavailable
	})
	if other != 0 {
		t.Errorf("%d answers during the outage were neither 201 nor 503", other)
	}
	d.pg.start()
	t.Logf("postgres down for %v", time.Since(stoppedAt).Round(time.Millisecond))
	before := l.count(issuedOK)
	testkit.Eventually(t, 90*time.Second, "service resumes by itself", func() error {
		if c := r.readyz(); c != http.StatusOK {
			return fmt.Errorf("readyz %d", c)
		}
		if n := l.count(issuedOK); n < before+10 {
			return fmt.Errorf("%d issued since postgres came back", n-before)
		}
		return nil
	})
	answers := l.halt()
	for _, a := range answers {
		if a.err == nil && a.status == http.StatusServiceUnavailable && a.reason != "store_unavailable" && a.reason != "hsm_unavailable" {
			t.Errorf("503 with reason %q during a database outage", a.reason)
		}
	}
	n := checkNothingLost(t, d, answers)
	t.Logf("%d certificates received across the outage; all recorded", n)
}

func TestAClientWithASkewedClockGetsAUsableCertificateAndAFutureTokenIsRefused(t *testing.T) {
	d := newDrillCA(t, "log:\n  level: warn\n") // the default backdate (5m)
	r := d.serve(t)
	now := time.Now()
	tests := []struct {
		name       string
		iat        time.Time
		wantStatus int
		wantReason string
	}{
		{"a client clock 20s ahead (iat in the future within leeway) enrolls", now.Add(20 * time.Second), http.StatusCreated, ""},
		{"a client clock 4 minutes behind enrolls", now.Add(-4 * time.Minute), http.StatusCreated, ""},
		{"a token from 5 minutes in the future is refused with token_not_yet_valid", now.Add(5 * time.Minute), http.StatusUnauthorized, "token_not_yet_valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := r.enroll(t, d.token(t, "skew", tt.iat))
			if a.err != nil || a.status != tt.wantStatus || a.reason != tt.wantReason {
				t.Fatalf("answer %d %q (%v), want %d %q", a.status, a.reason, a.err, tt.wantStatus, tt.wantReason)
			}
			if a.status != http.StatusCreated {
				return
			}
			leaf, err := x509.ParseCertificate(a.der)
			if err != nil {
				t.Fatal(err)
			}
			// A peer whose clock is up to 4 minutes behind must already
			// accept the certificate.
			if skewed := time.Now().Add(-4 * time.Minute); leaf.NotBefore.After(skewed) {
				t.Errorf("notBefore %v is after a 4-minutes-behind clock's now %v: not backdated enough", leaf.NotBefore, skewed)
			}
		})
	}
}
