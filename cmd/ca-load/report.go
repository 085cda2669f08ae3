package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// sigsPerEnrollment is how many token signatures one enrollment costs: the
// leaf certificate, and its OCSP response, which the publisher pre-signs
// with the delegated responder key on the same token. (The lint copy is
// signed with a throwaway software key.)
const sigsPerEnrollment = 2

// Targets of issue 7.
const (
	targetEnrollShare   = 0.60 // of the SoftHSM ceiling per enrollment
	targetEnrollP99Ms   = 25.0 // at half of the peak rate
	targetOCSPShare     = 0.80 // of the net/http baseline
	targetCRL1MSeconds  = 3.0
	targetServerRSSMB   = 150.0
	crlBenchmarkPackage = "pkg/revoke"
	crlBenchmarkName    = "BenchmarkCRLBuildAndSign/entries=1000000"
)

// Targets of issue 20: the embedded default (SQLite, software keys) at
// least as fast as step-ca on the same machine, the production setup
// (Postgres + SoftHSM) kept ahead, and overload shed early.
const (
	targetEmbedded16     = 1100.0 // enrollments/s at 16 clients
	targetEmbedded64     = 1500.0 // enrollments/s at 64 clients
	targetEmbeddedCPUMs  = 1.2    // server CPU ms per enrollment (at 16 clients)
	targetEmbeddedP99Ms  = 100.0  // p99 at 64 clients
	targetOverloadP99Ms  = 250.0  // p99 of the accepted requests under overload
	targetProduction16   = 900.0  // enrollments/s at 16 clients, Postgres + SoftHSM
	targetProductionConc = 16
)

// target is one figure checked against its goal.
type target struct {
	Name     string  `json:"name"`
	Goal     string  `json:"goal"`
	Measured string  `json:"measured"`
	Value    float64 `json:"value"`
	Pass     bool    `json:"pass"`
}

// report is what one run measured.
type report struct {
	Started       time.Time `json:"started"`
	Duration      string    `json:"scenario_duration"`
	Environment   []string  `json:"environment"`
	Ceiling       ceiling   `json:"softhsm_ceiling"`
	SigsPerEnroll int       `json:"signatures_per_enrollment"`
	// EnrollPeak is the best sustained enroll rate (OCSP pre-signing
	// included, see drain.go).
	EnrollPeak         float64       `json:"enroll_peak_per_s"`
	OCSPThroughput     float64       `json:"ocsp_per_s"`
	BaselineThroughput float64       `json:"baseline_per_s"` // mean of the baseline runs before and after ours
	ServerCPUTotal     float64       `json:"server_cpu_total_s"`
	Scenarios          []result      `json:"scenarios"`
	Targets            []target      `json:"targets"`
	GoBench            []goBenchLine `json:"go_benchmarks,omitempty"`
}

func (r *report) fillEnvironment(ctx context.Context, o options) {
	r.Environment = append(r.Environment,
		fmt.Sprintf("go %s, %s/%s, %d CPUs", strings.TrimPrefix(runtime.Version(), "go"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU()),
		"servers: embedded default (`ca serve` with SQLite and software keys) and production (`ca serve` on Postgres (pool_max_conns "+fmt.Sprint(o.dbPool)+") + SoftHSM2); client and server on the same machine, loopback")
	if out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output(); err == nil {
		r.Environment = append(r.Environment, "commit "+strings.TrimSpace(string(out)))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.Environment = append(r.Environment, "load average at start: "+strings.Join(strings.Fields(string(b))[:3], " "))
	}
}

func (r *report) scenario(name string) (result, bool) {
	for _, s := range r.Scenarios {
		if s.Scenario == name && s.Backend == "production" {
			return s, true
		}
	}
	return result{}, false
}

// find is the run of backend's scenario at conc clients.
func (r *report) find(backend, name string, conc int) (result, bool) {
	for _, s := range r.Scenarios {
		if s.Backend == backend && s.Scenario == name && s.Concurrency == conc {
			return s, true
		}
	}
	return result{}, false
}

// evaluate computes every target from the measurements.
func (r *report) evaluate() {
	r.evaluateEmbedded()
	if p, ok := r.find("production", "enroll", targetProductionConc); ok {
		r.Targets = append(r.Targets, target{
			Name: "production enrollments/s at 16 clients", Goal: fmt.Sprintf(">= %.0f/s sustained, Postgres + SoftHSM", targetProduction16),
			Measured: fmt.Sprintf("%.0f/s sustained, %.2f ms CPU/enrollment, p99 %.1f ms", p.Sustained, p.CPUPerReqMs, p.P99Ms),
			Value:    p.Sustained, Pass: p.Sustained >= targetProduction16 && p.Errors == 0,
		})
	}
	if r.Ceiling.Best == 0 {
		return // the production setup's other runs were not measured (not run, or --enroll-only)
	}
	r.SigsPerEnroll = sigsPerEnrollment
	limit := r.Ceiling.Best / sigsPerEnrollment
	r.Targets = append(r.Targets, target{
		Name: "enrollments/s", Goal: fmt.Sprintf(">= %.0f%% of ceiling %.0f/s (SoftHSM %.0f sig/s / %d sig per enrollment) = %.0f/s",
			targetEnrollShare*100, limit, r.Ceiling.Best, sigsPerEnrollment, targetEnrollShare*limit),
		Measured: fmt.Sprintf("%.0f/s sustained (%.0f%% of ceiling)", r.EnrollPeak, 100*r.EnrollPeak/limit),
		Value:    r.EnrollPeak, Pass: r.EnrollPeak >= targetEnrollShare*limit,
	})
	if h, ok := r.scenario("enroll at half peak"); ok {
		r.Targets = append(r.Targets, target{
			Name: "enroll p99 at half peak", Goal: fmt.Sprintf("< %.0f ms at %.0f/s", targetEnrollP99Ms, h.TargetRate),
			Measured: fmt.Sprintf("%.2f ms (%d errors)", h.P99Ms, h.Errors),
			Value:    h.P99Ms, Pass: h.P99Ms < targetEnrollP99Ms && h.Errors == 0,
		})
	}
	share := 0.0
	if r.BaselineThroughput > 0 {
		share = r.OCSPThroughput / r.BaselineThroughput
	}
	r.Targets = append(r.Targets, target{
		Name: "OCSP from the pre-signed cache", Goal: fmt.Sprintf(">= %.0f%% of net/http fixed 2 KB (%.0f/s, mean of the runs before and after)", targetOCSPShare*100, r.BaselineThroughput),
		Measured: fmt.Sprintf("%.0f/s (%.0f%%)", r.OCSPThroughput, share*100),
		Value:    share, Pass: share >= targetOCSPShare,
	})
	crl := target{Name: "1,000,000-entry CRL built and signed", Goal: fmt.Sprintf("< %.0f s", targetCRL1MSeconds), Measured: "not measured (run with --gobench)"}
	if l, ok := findBench(r.GoBench, crlBenchmarkPackage, crlBenchmarkName); ok {
		crl.Value = l.NsPerOp / 1e9
		crl.Measured = fmt.Sprintf("%.2f s (%s)", crl.Value, l.Name)
		crl.Pass = crl.Value < targetCRL1MSeconds
	}
	r.Targets = append(r.Targets, crl)
	var rss float64
	for _, s := range r.Scenarios {
		if s.Backend != "stepca" && strings.HasPrefix(s.Scenario, "enroll") {
			rss = max(rss, s.ServerPeakM)
		}
	}
	r.Targets = append(r.Targets, target{
		Name: "server RSS during the enroll runs", Goal: fmt.Sprintf("< %.0f MB", targetServerRSSMB),
		Measured: fmt.Sprintf("%.0f MB peak", rss), Value: rss, Pass: rss > 0 && rss < targetServerRSSMB,
	})
}

// evaluateEmbedded adds the embedded default's targets (issue 20).
func (r *report) evaluateEmbedded() {
	const be = "embedded"
	intact := func(s result) bool { return s.Errors == 0 && s.Recorded == len1(s) }
	for _, t := range []struct {
		conc int
		goal float64
	}{{16, targetEmbedded16}, {64, targetEmbedded64}} {
		s, ok := r.find(be, "enroll", t.conc)
		if !ok {
			continue
		}
		r.Targets = append(r.Targets, target{
			Name: fmt.Sprintf("embedded enrollments/s at %d clients", t.conc), Goal: fmt.Sprintf(">= %.0f/s sustained, no error, every answer recorded", t.goal),
			Measured: fmt.Sprintf("%.0f/s sustained (%d errors, %d recorded of %d answered)", s.Sustained, s.Errors, s.Recorded, len1(s)),
			Value:    s.Sustained, Pass: s.Sustained >= t.goal && intact(s),
		})
		if t.conc == 16 {
			r.Targets = append(r.Targets, target{
				Name: "embedded server CPU per enrollment (16 clients)", Goal: fmt.Sprintf("<= %.1f ms", targetEmbeddedCPUMs),
				Measured: fmt.Sprintf("%.3f ms", s.CPUPerReqMs), Value: s.CPUPerReqMs, Pass: s.CPUPerReqMs > 0 && s.CPUPerReqMs <= targetEmbeddedCPUMs,
			})
		}
		if t.conc == 64 {
			r.Targets = append(r.Targets, target{
				Name: "embedded enroll p99 at 64 clients", Goal: fmt.Sprintf("<= %.0f ms", targetEmbeddedP99Ms),
				Measured: fmt.Sprintf("%.1f ms", s.P99Ms), Value: s.P99Ms, Pass: s.P99Ms <= targetEmbeddedP99Ms,
			})
		}
	}
	for _, s := range r.Scenarios {
		if s.Backend != be || s.Scenario != "enroll overload" {
			continue
		}
		r.Targets = append(r.Targets, target{
			Name: fmt.Sprintf("embedded overload (%d clients): p99 of accepted", s.Concurrency),
			Goal: fmt.Sprintf("<= %.0f ms, excess shed with 503 overloaded, none lost or half-done", targetOverloadP99Ms),
			Measured: fmt.Sprintf("%.1f ms, %.0f/s accepted, %d shed, %d errors, %d recorded of %d answered",
				s.P99Ms, s.Throughput, s.Shed, s.Errors, s.Recorded, len1(s)),
			Value: s.P99Ms, Pass: s.P99Ms <= targetOverloadP99Ms && intact(s),
		})
	}
	// Side by side with step-ca (--backends embedded,stepca): issue 20's
	// comparison, step-ca having no OCSP to pre-sign.
	for _, st := range r.Scenarios {
		if st.Backend != "stepca" || st.Scenario != "enroll" {
			continue
		}
		s, ok := r.find(be, "enroll", st.Concurrency)
		if !ok {
			continue
		}
		r.Targets = append(r.Targets, target{
			Name: fmt.Sprintf("embedded against step-ca, %d clients", st.Concurrency), Goal: "at least step-ca's enrollments/s",
			Measured: fmt.Sprintf("%.0f/s sustained, %.3f ms CPU, p99 %.1f ms; step-ca %.0f/s, %.3f ms, p99 %.1f ms",
				s.Sustained, s.CPUPerReqMs, s.P99Ms, st.Throughput, st.CPUPerReqMs, st.P99Ms),
			Value: s.Sustained / st.Throughput, Pass: s.Sustained >= st.Throughput && st.Errors == 0,
		})
	}
	for _, name := range []string{"renew (mTLS)", "JWT-SVID (mTLS)"} {
		for _, s := range r.Scenarios {
			if s.Backend == be && s.Scenario == name {
				r.Targets = append(r.Targets, target{
					Name: "embedded " + name + " (reported)", Goal: "no error",
					Measured: fmt.Sprintf("%.0f/s, p99 %.1f ms, %.3f ms CPU/request", s.Throughput, s.P99Ms, s.CPUPerReqMs),
					Value:    s.Throughput, Pass: s.Errors == 0 && s.Throughput > 0,
				})
			}
		}
	}
}

// len1 is the number of answered (successful) requests of a run.
func len1(s result) int { return s.Requests - s.Errors - s.Shed }

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "MISS"
}

// printTargets prints one line per target.
func (r *report) printTargets(w io.Writer) {
	fmt.Fprintln(w, "targets:")
	for _, t := range r.Targets {
		fmt.Fprintf(w, "  %-4s %-40s %-34s goal %s\n", verdict(t.Pass), t.Name, t.Measured, t.Goal)
	}
}

// write saves report.json and report.md in dir.
func (r *report) write(dir string) error {
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown()), 0o644)
}

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# workload-ca load report, %s\n\n", r.Started.Format(time.RFC3339))
	for _, e := range r.Environment {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	fmt.Fprintf(&b, "- SoftHSM P-256 ceiling: %.0f signatures/s (by signing goroutines: %s); %d signatures per enrollment\n\n",
		r.Ceiling.Best, fmtWorkers(r.Ceiling.PerWorkers), r.SigsPerEnroll)
	b.WriteString("## Targets\n\n| | target | measured | goal |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", verdict(t.Pass), t.Name, t.Measured, t.Goal)
	}
	b.WriteString("\n## Scenarios\n\nFor the runs that issue certificates, *OCSP drain s* is how long the publisher took after the run to pre-sign\n" +
		"the new certificates' OCSP responses, and *sustained/s* = answered requests / (duration + drain); server CPU includes the drain.\n\n" +
		"CPU seconds over each run: the server, the load client, the postgres processes, and the whole machine (2 cores give 2 s per second).\n\n" +
		"| setup | scenario | concurrency | duration s | requests | errors | shed | recorded | req/s | OCSP drain s | sustained/s | p50 ms | p99 ms | max ms | server CPU s | server CPU ms/req | client CPU s | postgres CPU s | machine CPU s | server peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		name := s.Scenario
		if s.TargetRate > 0 {
			name += fmt.Sprintf(" (open loop, %.0f/s)", s.TargetRate)
		}
		drain, sustained := "", ""
		if s.Sustained > 0 {
			drain, sustained = fmt.Sprintf("%.1f", s.DrainS), fmt.Sprintf("%.0f", s.Sustained)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f | %d | %d | %d | %d | %.0f | %s | %s | %.2f | %.2f | %.2f | %.1f | %.3f | %.1f | %.1f | %.1f | %.0f |\n",
			s.Backend, name, s.Concurrency, s.DurationS, s.Requests, s.Errors, s.Shed, s.Recorded, s.Throughput, drain, sustained, s.P50Ms, s.P99Ms, s.MaxMs,
			s.ServerCPUS, s.CPUPerReqMs, s.ClientCPUS, s.PostgresCPUS, s.MachineCPUS, s.ServerPeakM)
	}
	for _, s := range r.Scenarios {
		if s.FirstError != "" {
			fmt.Fprintf(&b, "\nfirst error of %q (c=%d): `%s`\n", s.Scenario, s.Concurrency, s.FirstError)
		}
	}
	for _, s := range r.Scenarios {
		if len(s.Breakdown) == 0 {
			continue
		}
		name := s.Scenario
		if s.TargetRate > 0 {
			name += fmt.Sprintf(" at %.0f/s", s.TargetRate)
		}
		fmt.Fprintf(&b, "\n### Inside the server: %s %s (c=%d)\n\nMeans of the server's own histograms over the run and its OCSP drain.\n\n"+
			"| series | calls | per request | mean ms |\n|---|---|---|---|\n", s.Backend, name, s.Concurrency)
		for _, row := range s.Breakdown {
			fmt.Fprintf(&b, "| `%s` | %.0f | %.2f | %.3f |\n", row.Series, row.Calls, row.PerRequest, row.MeanMs)
		}
	}
	if len(r.GoBench) > 0 {
		b.WriteString("\n## Go benchmarks\n\n| package | benchmark | ns/op | more |\n|---|---|---|---|\n")
		for _, l := range r.GoBench {
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s |\n", l.Package, l.Name, l.NsPerOp, l.Extra)
		}
	}
	return b.String()
}

func fmtWorkers(m map[int]float64) string {
	var parts []string
	for _, w := range []int{1, 2, 4, 8} {
		if v, ok := m[w]; ok {
			parts = append(parts, fmt.Sprintf("%d: %.0f", w, v))
		}
	}
	return strings.Join(parts, ", ")
}
