package testkit

import (
	"testing"
	"time"
)

// pollInterval is how often Eventually asks again.
const pollInterval = 50 * time.Millisecond

// Eventually polls cond until it returns nil and returns how long that took,
// or fails the test with what, within and cond's last error once within has
// passed. It is for work another goroutine or process finishes (a CRL
// regeneration, a reconnect, a reload), never for waiting out an expiry:
// time that a test controls goes through a fake clock. within is a hang
// guard, generous enough for -race on a loaded machine, not a figure.
func Eventually(t testing.TB, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(pollInterval)
	}
}

// EventuallyTrue is Eventually for a condition without an error to report.
func EventuallyTrue(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return Eventually(t, within, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

type notYet struct{}

func (notYet) Error() string { return "the condition does not hold yet" }

var errNotYet error = notYet{}
