package main

import (
	"strings"
	"testing"
	"time"
)

func TestBreakdownIsTheDeltaOfEachSeriesThatMoved(t *testing.T) {
	before := histSnapshot{
		"ca_issuance_duration_seconds{action=issue}":     {1.0, 100},
		"ca_store_call_duration_seconds{method=Idle}":    {0.5, 10},
		"ca_store_call_duration_seconds{method=Revoked}": {0, 0},
	}
	after := histSnapshot{
		"ca_issuance_duration_seconds{action=issue}":       {3.0, 1100},
		"ca_store_call_duration_seconds{method=Idle}":      {0.5, 10},
		"ca_store_call_duration_seconds{method=PutOCSP}":   {0.2, 20},
		"ca_store_call_duration_seconds{method=Revoked}":   {0, 0},
		"ca_hsm_sign_duration_seconds{key=int,outcome=ok}": {0.5, 2000},
	}
	rows := breakdown(before, after, 1000)
	want := []breakdownRow{
		{Series: "ca_hsm_sign_duration_seconds{key=int,outcome=ok}", Calls: 2000, PerRequest: 2, MeanMs: 0.25},
		{Series: "ca_issuance_duration_seconds{action=issue}", Calls: 1000, PerRequest: 1, MeanMs: 2},
		{Series: "ca_store_call_duration_seconds{method=PutOCSP}", Calls: 20, PerRequest: 0.02, MeanMs: 10},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows = %+v; want %+v", rows, want)
	}
	for i := range want {
		g, w := rows[i], want[i]
		if g.Series != w.Series || g.Calls != w.Calls || !near(g.PerRequest, w.PerRequest) || !near(g.MeanMs, w.MeanMs) {
			t.Errorf("row %d = %+v; want %+v", i, g, w)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestPercentileIsNearestRank(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := percentile(lat, p); got != want {
			t.Errorf("p%v = %v; want %v", p*100, got, want)
		}
	}
	if got := percentile(nil, 0.99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}

func TestEnrollTargetIsJudgedOnTheSustainedRate(t *testing.T) {
	r := &report{
		Ceiling:    ceiling{Best: 1000}, // 500 enrollments/s at 2 signatures each; 60% = 300/s
		EnrollPeak: 310,
		Scenarios: []result{
			{Scenario: "enroll", Concurrency: 32, Throughput: 400, Sustained: 310, DrainS: 2},
			{Scenario: "enroll at half peak", TargetRate: 155, P99Ms: 30},
		},
		OCSPThroughput: 800, BaselineThroughput: 1000,
	}
	r.evaluate()
	got := map[string]target{}
	for _, tg := range r.Targets {
		got[tg.Name] = tg
	}
	if tg := got["enrollments/s"]; !tg.Pass || !strings.Contains(tg.Measured, "310/s sustained") {
		t.Errorf("enrollments/s = %+v; want PASS on 310/s sustained", tg)
	}
	if tg := got["enroll p99 at half peak"]; tg.Pass {
		t.Errorf("p99 30 ms passed a 25 ms target: %+v", tg)
	}
	if tg := got["OCSP from the pre-signed cache"]; !tg.Pass {
		t.Errorf("OCSP at exactly 80%% of the baseline = %+v; want PASS", tg)
	}
	if tg := got["1,000,000-entry CRL built and signed"]; tg.Pass {
		t.Errorf("an unmeasured CRL target passed: %+v", tg)
	}
	r.EnrollPeak = 299
	r.Targets = nil
	r.evaluate()
	if r.Targets[0].Pass {
		t.Errorf("299/s sustained passed a 300/s target")
	}
}
