package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func TestGeneratedRequestIDsAreDistinctAndWellFormed(t *testing.T) {
	f := newFixture(t)
	h := f.routes.Public()
	seen := map[string]bool{}
	var prefix string
	for range 100 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		id := rec.Header().Get(RequestIDHeader)
		if !wellFormedID(id) || seen[id] {
			t.Fatalf("id %q: well-formed %v, seen before %v", id, wellFormedID(id), seen[id])
		}
		seen[id] = true
		p, _, ok := strings.Cut(id, "-")
		if !ok || len(p) != 16 || prefix != "" && p != prefix {
			t.Fatalf("id %q does not carry the process prefix %q", id, prefix)
		}
		prefix = p
	}
	if other := newRequestIDs().next(); strings.HasPrefix(other, prefix) {
		t.Errorf("another process's id %q has this one's prefix %q", other, prefix)
	}
}

// accessLines returns the access-log lines of f by path.
func accessLines(t *testing.T, f *fixture) map[string]map[string]any {
	t.Helper()
	lines := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		if line["msg"] == "http request" {
			lines[line["listener"].(string)+" "+line["path"].(string)] = line
		}
	}
	return lines
}

func TestArtifactLogLevelLowersOnlyThePublicListenersArtifactLines(t *testing.T) {
	for _, tt := range []struct {
		name  string
		level slog.Level
		want  map[string]string
	}{
		{"by default every request is logged at info", slog.LevelInfo, map[string]string{
			"public /bundle.pem": "INFO", "public /healthz": "INFO", "api /bundle.pem": "INFO",
		}},
		{"at debug the public bundle line is debug, the rest stays info", slog.LevelDebug, map[string]string{
			"public /bundle.pem": "DEBUG", "public /healthz": "INFO", "api /bundle.pem": "INFO",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureWith(t, func(_ *fixture, d *Deps) { d.ArtifactLogLevel = tt.level })
			pub, api := f.routes.Public(), f.routes.API()
			for _, h := range []http.Handler{pub, api} {
				for _, path := range []string{"/bundle.pem", "/healthz"} {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
					if rec.Code != http.StatusOK {
						t.Fatalf("GET %s: %d", path, rec.Code)
					}
				}
			}
			lines := accessLines(t, f)
			for k, want := range tt.want {
				line := lines[k]
				if line == nil || line["level"] != want || line["request_id"] == "" || line["status"] != float64(200) {
					t.Errorf("%s: line %v, want level %s with request_id and status", k, line, want)
				}
			}
			for _, listener := range []string{"public", "api"} {
				var m dto.Metric
				c := f.routes.metrics.requests.WithLabelValues(listener, "/bundle.pem", "GET", "200")
				if err := c.Write(&m); err != nil || m.GetCounter().GetValue() != 1 {
					t.Errorf("%s /bundle.pem counted %v times (%v), want 1", listener, m.GetCounter().GetValue(), err)
				}
			}
		})
	}
}

func TestArtifactLinesAreSampledAndTheirFailuresAlwaysLoggedAtInfo(t *testing.T) {
	f := newFixtureWith(t, func(_ *fixture, d *Deps) {
		d.ArtifactLogLevel, d.ArtifactLogSample = slog.LevelDebug, 3
	})
	get := func(h http.Handler, path string, want int) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Fatalf("GET %s: %d, want %d", path, rec.Code, want)
		}
	}
	pub, api := f.routes.Public(), f.routes.API()
	for range 7 {
		get(pub, "/bundle.pem", http.StatusOK)
		get(pub, "/healthz", http.StatusOK)
	}
	for range 2 {
		get(api, "/bundle.pem", http.StatusOK)
		get(pub, "/crl/nosuch.crl", http.StatusNotFound) // no revocation source: 404
	}
	counts := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		if line["msg"] != "http request" {
			continue
		}
		k := line["listener"].(string) + " " + line["path"].(string)
		counts[k]++
		switch k {
		case "public /bundle.pem":
			if line["level"] != "DEBUG" || line["sample_one_in"] != float64(3) {
				t.Errorf("sampled artifact line %v; want DEBUG with sample_one_in 3", line)
			}
		case "public /crl/nosuch.crl":
			if line["level"] != "INFO" || line["status"] != float64(404) || line["sample_one_in"] != nil {
				t.Errorf("failed artifact line %v; want INFO, status 404, not sampled", line)
			}
		default:
			if line["level"] != "INFO" || line["sample_one_in"] != nil {
				t.Errorf("line %v; want INFO, not sampled", line)
			}
		}
	}
	want := map[string]int{
		"public /bundle.pem": 3, // answers 1, 4 and 7
		"public /healthz":    7, "api /bundle.pem": 2, "public /crl/nosuch.crl": 2,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d lines, want %d (all: %v)", k, counts[k], n, counts)
		}
	}
	var m dto.Metric
	c := f.routes.metrics.requests.WithLabelValues("public", "/bundle.pem", "GET", "200")
	if err := c.Write(&m); err != nil || m.GetCounter().GetValue() != 7 {
		t.Errorf("public /bundle.pem counted %v times (%v), want every one of 7", m.GetCounter().GetValue(), err)
	}
}

func TestUniqueClientMethodsLeaveTheRequestSeriesBounded(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.routes.Public())
	defer srv.Close()
	for i := range 200 {
		req, err := http.NewRequest("X-"+strconv.Itoa(i), srv.URL+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	series, methods := 0, map[string]bool{}
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, "ca_http_requests_total{") {
			continue
		}
		series++
		_, rest, _ := strings.Cut(l, `method="`)
		m, _, _ := strings.Cut(rest, `"`)
		methods[m] = true
	}
	// At most one series per fixed method per (route, code) seen here.
	if series == 0 || series > 8 || methods["X-7"] || !methods["other"] {
		t.Errorf("%d ca_http_requests_total series with methods %v after 200 unique methods; want a few, labelled other", series, methods)
	}
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		if m, ok := line["method"].(string); ok && line["msg"] == "http request" && m != "other" && m != "GET" {
			t.Fatalf("access log line carries the client's method %q: %v", m, line)
		}
	}
}
