package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/jwtkeys"
)

// keyReadySigner is a JWT signer whose key readiness the test sets.
type keyReadySigner struct{ err error }

func (s *keyReadySigner) Sign(context.Context, jwtkeys.Request) (*jwtkeys.Token, error) {
	return nil, s.err
}
func (s *keyReadySigner) KeyReady(context.Context) error { return s.err }

// TestReadyzFailsWhileAKeyTheCANeedsCannotSign: /readyz is 503 while the
// JWT-SVID key cannot sign (issue 17: opencryptoki's soft token could not
// make the P-256 key and /readyz still said ready), hsm_unsupported for a
// refused key type, hsm_unavailable for a lost token, and ready again after.
func TestReadyzFailsWhileAKeyTheCANeedsCannotSign(t *testing.T) {
	signer := &keyReadySigner{}
	f := newFixtureWith(t, func(_ *fixture, d *Deps) { d.JWT = JWTDeps{Signer: signer} })
	readyz := func() (int, Reason, map[string]string) {
		f.clock.Advance(readyCacheFor)
		rec := httptest.NewRecorder()
		f.routes.API().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code == http.StatusOK {
			var body healthBody
			if err := json.NewDecoder(rec.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			return rec.Code, "", body.Checks
		}
		return rec.Code, decodeProblem(t, rec.Result()).Reason, nil
	}
	if code, _, checks := readyz(); code != http.StatusOK || checks["jwt_key"] != "ok" {
		t.Fatalf("healthy: %d %v", code, checks)
	}
	for _, c := range []struct {
		err  error
		want Reason
	}{
		{fmt.Errorf("jwtkeys: generating: %w", hsm.ErrUnsupported), ReasonHSMUnsupported},
		{fmt.Errorf("jwtkeys: signing: %w", hsm.ErrUnavailable), ReasonHSMUnavailable},
		{jwtkeys.ErrNoActiveKey, ReasonHSMUnavailable},
	} {
		signer.err = c.err
		if code, reason, _ := readyz(); code != http.StatusServiceUnavailable || reason != c.want {
			t.Errorf("%v: readyz %d %s, want 503 %s", c.err, code, reason, c.want)
		}
	}
	signer.err = nil
	if code, reason, _ := readyz(); code != http.StatusOK {
		t.Errorf("recovered: readyz %d %s", code, reason)
	}
}

func TestHSMUnsupportedIsA503WithItsReason(t *testing.T) {
	kind, reason, detail := classify(fmt.Errorf("issuing: %w", hsm.ErrUnsupported))
	if kind.Status() != http.StatusServiceUnavailable || reason != ReasonHSMUnsupported || detail == "" {
		t.Errorf("classify = %v (%d) %s %q", kind, kind.Status(), reason, detail)
	}
}
