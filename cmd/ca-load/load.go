package main

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// errExhausted is returned by a request function when the scenario's
// pre-generated inputs ran out; the run stops early without counting it.
var errExhausted = errors.New("pre-generated inputs exhausted")

// requestFunc performs one request. It returns nil on the expected answer.
type requestFunc func(ctx context.Context) error

// result is one scenario's measurement.
type result struct {
	// Backend is the setup measured: embedded or production.
	Backend     string  `json:"backend"`
	Scenario    string  `json:"scenario"`
	Concurrency int     `json:"concurrency"`
	TargetRate  float64 `json:"target_rate_per_s,omitempty"` // open-loop runs only
	DurationS   float64 `json:"duration_s"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	// Shed counts the 503 overloaded answers (the server refused the
	// request before doing anything; the client waited Retry-After).
	Shed int `json:"shed,omitempty"`
	// Recorded is, for issuing runs, how many certificates the store gained
	// over the run: equal to the answered requests when nothing was lost
	// and nothing was recorded without an answer.
	Recorded int `json:"recorded,omitempty"`
	// CPUPerReqMs is the server's CPU time per answered request (drain
	// included).
	CPUPerReqMs float64 `json:"server_cpu_ms_per_request"`
	FirstError  string  `json:"first_error,omitempty"`
	Throughput  float64 `json:"throughput_per_s"` // successful requests per second
	// DrainS is, for enroll runs, how long after the run the publisher took
	// to pre-sign the OCSP responses of the certificates it issued;
	// Sustained is successful requests / (duration + drain).
	DrainS    float64 `json:"ocsp_drain_s,omitempty"`
	Sustained float64 `json:"sustained_per_s,omitempty"`
	// Breakdown is the server's own histograms over the run (issuing runs).
	Breakdown  []breakdownRow `json:"server_breakdown,omitempty"`
	P50Ms      float64        `json:"p50_ms"`
	P99Ms      float64        `json:"p99_ms"`
	MaxMs      float64        `json:"max_ms"`
	ServerCPUS float64        `json:"server_cpu_s"`
	// ClientCPUS, PostgresCPUS and MachineCPUS are the load client's, the
	// postgres processes' and the whole machine's busy CPU seconds over the
	// run (see procstat.Shares).
	ClientCPUS   float64 `json:"client_cpu_s"`
	PostgresCPUS float64 `json:"postgres_cpu_s"`
	MachineCPUS  float64 `json:"machine_cpu_s"`
	ServerPeakM  float64 `json:"server_peak_rss_mb"`
}

// recorder collects latencies from many goroutines.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     int
	shed     int
	firstErr error
}

// errShed is a request the server shed (503 overloaded).
var errShed = errors.New("shed: 503 overloaded")

// shedError is errShed with the wait the client should observe before its
// next request: the server's Retry-After with jitter, as `ca enroll` does.
type shedError struct{ wait time.Duration }

func (e *shedError) Error() string        { return errShed.Error() }
func (e *shedError) Is(target error) bool { return target == errShed }

func (r *recorder) add(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if errors.Is(err, errShed) {
		r.shed++
		return
	}
	if err != nil {
		r.errs++
		if r.firstErr == nil {
			r.firstErr = err
		}
		return
	}
	r.lat = append(r.lat, d)
}

// fill computes the counts and percentiles into res.
func (r *recorder) fill(res *result, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(r.lat)
	res.Requests = len(r.lat) + r.errs + r.shed
	res.Errors = r.errs
	res.Shed = r.shed
	if r.firstErr != nil {
		res.FirstError = r.firstErr.Error()
	}
	res.DurationS = elapsed.Seconds()
	if elapsed > 0 {
		res.Throughput = float64(len(r.lat)) / elapsed.Seconds()
	}
	res.P50Ms = ms(percentile(r.lat, 0.50))
	res.P99Ms = ms(percentile(r.lat, 0.99))
	if n := len(r.lat); n > 0 {
		res.MaxMs = ms(r.lat[n-1])
	}
}

// percentile is the nearest-rank percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

// closedLoop runs conc workers that each issue requests back to back for d
// (or until fn reports errExhausted). A request still in flight at the end
// of d runs to its answer, and the run lasts until it has: cutting it off
// would leave the server with work (a certificate recorded but never
// delivered) that the run did not count.
func closedLoop(ctx context.Context, conc int, d time.Duration, fn requestFunc) (*recorder, time.Duration) {
	rec := &recorder{}
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				t0 := time.Now()
				err := fn(ctx)
				if errors.Is(err, errExhausted) {
					cancel()
					return
				}
				if ctx.Err() != nil && err != nil {
					return // interrupted, not an answer
				}
				rec.add(time.Since(t0), err)
				var shed *shedError
				if errors.As(err, &shed) {
					select {
					case <-runCtx.Done():
					case <-time.After(shed.wait):
					}
				}
			}
		}()
	}
	wg.Wait()
	return rec, time.Since(start)
}

// openLoop starts requests at a fixed rate for d, with at most maxConc in
// flight. Latency is measured from each request's scheduled start, so time
// spent waiting for a free slot counts (no coordinated omission).
func openLoop(ctx context.Context, rate float64, maxConc int, d time.Duration, fn requestFunc) (*recorder, time.Duration) {
	rec := &recorder{}
	interval := time.Duration(float64(time.Second) / rate)
	sem := make(chan struct{}, maxConc)
	var wg sync.WaitGroup
	var exhausted atomic.Bool
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d || exhausted.Load() || ctx.Err() != nil {
			break
		}
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := fn(ctx)
			if errors.Is(err, errExhausted) {
				exhausted.Store(true)
				return
			}
			rec.add(time.Since(at), err)
		}()
	}
	wg.Wait()
	return rec, time.Since(start)
}
