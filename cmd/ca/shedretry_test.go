package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/server"
)

func TestRequestCertWaitsRetryAfterWithJitterOnOverloadedAndRetries(t *testing.T) {
	var mu sync.Mutex
	calls, tokens := 0, []string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		tokens = append(tokens, r.Header.Get("Authorization"))
		mu.Unlock()
		if n <= 2 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(server.Problem{Status: 503, Reason: server.ReasonOverloaded, Detail: "busy"})
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(server.CertResponse{Serial: "abc"})
	}))
	defer srv.Close()
	var waits []time.Duration
	orig := shedWait
	shedWait = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	defer func() { shedWait = orig }()

	cr, err := requestCert(context.Background(), srv.Client(), srv.URL+"/v1/enroll", "tok", []byte("csr"), 0)
	if err != nil || cr.Serial != "abc" {
		t.Fatalf("requestCert = %+v, %v; want the certificate after two shed answers", cr, err)
	}
	if len(waits) != 2 {
		t.Fatalf("waited %d times; want 2", len(waits))
	}
	for _, d := range waits {
		if d < 2*time.Second || d > 3*time.Second {
			t.Errorf("wait %v; want Retry-After 2s plus at most half of it", d)
		}
	}
	for _, tok := range tokens {
		if tok != "Bearer tok" {
			t.Errorf("a retry sent %q; want the same token (a shed request does not spend it)", tok)
		}
	}
}

func TestRequestCertDoesNotRetryOtherRefusalsOrForever(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reason    server.Reason
		wantCalls int
	}{
		{"store_unavailable is the caller's to retry (the token may be spent)", server.ReasonStoreUnavailable, 1},
		{"overloaded is retried a bounded number of times", server.ReasonOverloaded, maxShedRetries + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls++
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusServiceUnavailable)
				_ = json.NewEncoder(w).Encode(server.Problem{Status: 503, Reason: tc.reason})
			}))
			defer srv.Close()
			orig := shedWait
			shedWait = func(context.Context, time.Duration) error { return nil }
			defer func() { shedWait = orig }()
			_, err := requestCert(context.Background(), srv.Client(), srv.URL+"/v1/enroll", "tok", []byte("csr"), 0)
			var p *problemError
			if !errors.As(err, &p) || p.Reason != string(tc.reason) {
				t.Fatalf("err = %v; want the %s problem", err, tc.reason)
			}
			if calls != tc.wantCalls {
				t.Errorf("calls = %d; want %d", calls, tc.wantCalls)
			}
		})
	}
}

func TestRetryAfterWithJitterBounds(t *testing.T) {
	for h, lo := range map[string]time.Duration{"": time.Second, "x": time.Second, "0": time.Second, "3": 3 * time.Second, "99999": maxShedWait} {
		for range 50 {
			if d := retryAfterWithJitter(h); d < lo || d > lo+lo/2 {
				t.Fatalf("retryAfterWithJitter(%q) = %v; want [%v, %v]", h, d, lo, lo+lo/2)
			}
		}
	}
}
