package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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

// countingPinger counts probes; each takes a while, so concurrent callers
// overlap with it.
type countingPinger struct {
	probes atomic.Int64
	err    atomic.Pointer[error]
}

func (p *countingPinger) Ping(ctx context.Context) error {
	p.probes.Add(1)
	select {
	case <-time.After(20 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}

func TestConcurrentReadyzShareOneProbePerSecond(t *testing.T) {
	keys, db := &countingPinger{}, &countingPinger{}
	f := newFixtureWith(t, func(_ *fixture, d *Deps) { d.Keys, d.Store = keys, db })
	srv := httptest.NewServer(f.routes.Public())
	defer srv.Close()
	burst := func(want int) {
		t.Helper()
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				res, err := srv.Client().Get(srv.URL + "/readyz")
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				if res.StatusCode != want {
					t.Errorf("readyz %d, want %d", res.StatusCode, want)
				}
			})
		}
		wg.Wait()
	}
	burst(http.StatusOK)
	if k, s := keys.probes.Load(), db.probes.Load(); k != 1 || s != 1 {
		t.Fatalf("50 concurrent /readyz probed the key store %d and the database %d times, want once each", k, s)
	}
	f.clock.Advance(500 * time.Millisecond)
	burst(http.StatusOK)
	if k := keys.probes.Load(); k != 1 {
		t.Fatalf("within the second: %d key-store probes, want still 1", k)
	}
	// A second later the result is stale: one new probe, which now fails,
	// and the failure is shared too.
	gone := error(hsm.ErrUnavailable)
	keys.err.Store(&gone)
	f.clock.Advance(600 * time.Millisecond)
	burst(http.StatusServiceUnavailable)
	if k, s := keys.probes.Load(), db.probes.Load(); k != 2 || s != 2 {
		t.Fatalf("after a second: key store probed %d, database %d times, want 2 each", k, s)
	}
}
