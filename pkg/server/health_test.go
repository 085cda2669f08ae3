package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/store"
)

func TestHealthzAnswersOKWhateverTheDependencies(t *testing.T) {
	f := newFixture(t)
	f.store.set(store.ErrUnavailable, 0)
	rec := httptest.NewRecorder()
	f.routes.Public().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	var body map[string]string
	_ = json.NewDecoder(rec.Body).Decode(&body)
	if rec.Code != 200 || body["status"] != "ok" {
		t.Errorf("got %d %v", rec.Code, body)
	}
}

func TestReadyzChecksTheStoreAndTheKeyStore(t *testing.T) {
	tests := []struct {
		name             string
		storeErr, hsmErr error
		storeDelay       time.Duration
		status           int
		reason           Reason
	}{
		{"both answering is ready", nil, nil, 0, 200, ""},
		{"a database that is down is store_unavailable", fmt.Errorf("ping: %w", store.ErrUnavailable), nil, 0, 503, ReasonStoreUnavailable},
		{"a database failing oddly is still store_unavailable", errBoom, nil, 0, 503, ReasonStoreUnavailable},
		{"a database that hangs is store_unavailable after the timeout", nil, nil, time.Hour, 503, ReasonStoreUnavailable},
		{"a token that is gone is hsm_unavailable", nil, fmt.Errorf("ping: %w", hsm.ErrUnavailable), 0, 503, ReasonHSMUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.store.set(tt.storeErr, tt.storeDelay)
			f.hsm.set(tt.hsmErr, 0)
			rec := httptest.NewRecorder()
			start := time.Now()
			f.routes.API().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if time.Since(start) > 5*time.Second {
				t.Error("readyz did not honour its timeout")
			}
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if tt.status != 200 {
				if p := decodeProblem(t, rec.Result()); p.Reason != tt.reason {
					t.Errorf("reason = %q, want %q", p.Reason, tt.reason)
				}
			}
		})
	}
}

func TestNewRoutesNamesAMissingDependency(t *testing.T) {
	_, err := NewRoutes(Deps{})
	if !errors.Is(err, ErrMissingDependency) || !strings.Contains(err.Error(), "Deps.Log") {
		t.Errorf("err = %v", err)
	}
}
