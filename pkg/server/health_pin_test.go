package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
