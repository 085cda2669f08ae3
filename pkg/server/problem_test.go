package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/store"
)

func decodeProblem(t *testing.T, res *http.Response) Problem {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("Content-Type = %q, want %q", ct, ProblemContentType)
	}
	var p Problem
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestErrorsMapToStatusAndReason(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		reason Reason
	}{
		{"an unavailable HSM is 503 hsm_unavailable", fmt.Errorf("sign: %w", hsm.ErrUnavailable), 503, ReasonHSMUnavailable},
		{"an unavailable database is 503 store_unavailable", fmt.Errorf("insert: %w", store.ErrUnavailable), 503, ReasonStoreUnavailable},
		{"a missing row is 404 not_found", fmt.Errorf("get: %w", store.ErrNotFound), 404, ReasonNotFound},
		{"an oversized body is 413 body_too_large", fmt.Errorf("decode: %w", &http.MaxBytesError{Limit: 1}), 413, ReasonBodyTooLarge},
		{"a typed *Error keeps its status and reason", &Error{Kind: KindPolicy, Reason: ReasonPolicyDenied, Detail: "no rule matched"}, 403, ReasonPolicyDenied},
		{"a wrapped *Error keeps its status and reason", fmt.Errorf("x: %w", &Error{Kind: KindBearerInvalid, Reason: ReasonTokenExpired, Detail: "expired"}), 401, ReasonTokenExpired},
		{"the issuer's refusal of a CA name is 403 policy_denied", fmt.Errorf("issue: %w", &issuer.ReservedNameError{Check: issuer.CheckReservedDNSName, Name: "ca.example.org"}), 403, ReasonPolicyDenied},
		{"anything else is a generic 500", errBoom, 500, ReasonInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.routes.API()
			r.Method(http.MethodGet, "/fail", f.routes.edge.handle(func(http.ResponseWriter, *http.Request) error { return tt.err }))
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/fail", nil))
			res := rec.Result()
			if res.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.status)
			}
			p := decodeProblem(t, res)
			if p.Reason != tt.reason || p.Status != tt.status || p.Title == "" || p.Type == "" {
				t.Errorf("problem = %+v", p)
			}
			if p.RequestID == "" || p.RequestID != res.Header.Get(RequestIDHeader) {
				t.Errorf("request_id %q does not match header %q", p.RequestID, res.Header.Get(RequestIDHeader))
			}
			if strings.Contains(p.Detail, "secret internal detail") {
				t.Errorf("internal detail leaked: %q", p.Detail)
			}
		})
	}
}

func TestAn500IsLoggedWithItsCauseAndRequestID(t *testing.T) {
	f := newFixture(t)
	r := f.routes.API()
	r.Method(http.MethodGet, "/fail", f.routes.edge.handle(func(http.ResponseWriter, *http.Request) error { return errBoom }))
	req := httptest.NewRequest(http.MethodGet, "/fail", nil)
	req.Header.Set(RequestIDHeader, "req-123")
	r.ServeHTTP(httptest.NewRecorder(), req)
	logs := f.logs.String()
	if !strings.Contains(logs, `"request_id":"req-123"`) || !strings.Contains(logs, "secret internal detail") {
		t.Errorf("500 not logged with cause and request id:\n%s", logs)
	}
}

func TestAPanicBecomesA500ProblemAndIsLogged(t *testing.T) {
	f := newFixture(t)
	r := f.routes.API()
	r.Method(http.MethodGet, "/panic", f.routes.edge.handle(func(http.ResponseWriter, *http.Request) error { panic("kaboom") }))
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/panic", nil))
	res := rec.Result()
	if res.StatusCode != 500 {
		t.Fatalf("status = %d", res.StatusCode)
	}
	if p := decodeProblem(t, res); p.Reason != ReasonInternal || strings.Contains(p.Detail, "kaboom") {
		t.Errorf("problem = %+v", p)
	}
	if !strings.Contains(f.logs.String(), "kaboom") {
		t.Error("panic not logged")
	}
}

func TestUnknownRoutesAndWrongMethodsAreProblems(t *testing.T) {
	tests := []struct {
		name, method, path string
		status             int
		reason             Reason
		allow              string
	}{
		{"an unknown path is 404 not_found", "GET", "/nope", 404, ReasonNotFound, ""},
		{"POST to /healthz is 405 with Allow", "POST", "/healthz", 405, ReasonMethodNotAllowed, "GET"},
		{"DELETE to /bundle.pem is 405 with Allow", "DELETE", "/bundle.pem", 405, ReasonMethodNotAllowed, "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			rec := httptest.NewRecorder()
			f.routes.Public().ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			res := rec.Result()
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.status)
			}
			if p := decodeProblem(t, res); p.Reason != tt.reason {
				t.Errorf("reason = %q", p.Reason)
			}
			if tt.allow != "" && !strings.Contains(strings.Join(res.Header.Values("Allow"), ","), tt.allow) {
				t.Errorf("Allow = %q, want it to contain %q", res.Header.Values("Allow"), tt.allow)
			}
		})
	}
}

func TestBodiesOverTheLimitAreRefusedWith413(t *testing.T) {
	tests := []struct {
		name          string
		body          io.Reader
		contentLength int64
		status        int
	}{
		{"a declared length over the limit is refused before the handler", strings.NewReader(strings.Repeat("a", 2048)), 2048, 413},
		{"a streamed body over the limit is refused when read", io.MultiReader(strings.NewReader(strings.Repeat("a", 2048))), -1, 413},
		{"a body within the limit is read", strings.NewReader("small"), 5, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.routes.API()
			r.Method(http.MethodPost, "/echo", f.routes.edge.handle(func(w http.ResponseWriter, r *http.Request) error {
				if _, err := io.ReadAll(r.Body); err != nil {
					return fmt.Errorf("reading body: %w", err)
				}
				return writeJSON(w, 200, map[string]string{"ok": "yes"})
			}))
			req := httptest.NewRequest(http.MethodPost, "/echo", tt.body)
			req.ContentLength = tt.contentLength
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if tt.status == 413 {
				if p := decodeProblem(t, rec.Result()); p.Reason != ReasonBodyTooLarge {
					t.Errorf("reason = %q", p.Reason)
				}
			}
		})
	}
}

func TestRequestIDsAreEchoedWhenWellFormedAndMadeOtherwise(t *testing.T) {
	tests := []struct {
		name, in string
		kept     bool
	}{
		{"a well-formed id is kept", "abc-123_X.y", true},
		{"a missing id is generated", "", false},
		{"an id with spaces is replaced", "a b", false},
		{"an overlong id is replaced", strings.Repeat("a", 65), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
			if tt.in != "" {
				req.Header.Set(RequestIDHeader, tt.in)
			}
			rec := httptest.NewRecorder()
			f.routes.Public().ServeHTTP(rec, req)
			got := rec.Header().Get(RequestIDHeader)
			if got == "" || (got == tt.in) != tt.kept {
				t.Errorf("X-Request-Id = %q (in %q)", got, tt.in)
			}
		})
	}
}

func TestEveryRequestGetsOneJSONAccessLogLine(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	req.Header.Set(RequestIDHeader, "log-me")
	f.routes.Public().ServeHTTP(httptest.NewRecorder(), req)
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(f.logs.String()), "\n") {
		if strings.Contains(l, `"msg":"http request"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, want := range map[string]any{"request_id": "log-me", "method": "GET", "path": "/healthz", "status": float64(200), "listener": "public"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v (line %v)", k, line[k], want, line)
		}
	}
	if _, ok := line["duration_ms"]; !ok {
		t.Error("no duration_ms")
	}
}

// appendProblem writes what json.NewEncoder(w).Encode(p) wrote.
func TestAppendProblemWritesWhatTheEncoderWrote(t *testing.T) {
	for _, p := range []Problem{
		{Type: "urn:workload-ca:problem:not_found", Title: "Not Found", Status: 404, Detail: "no such resource", Reason: ReasonNotFound, RequestID: "abc-1"},
		{Type: "urn:workload-ca:problem:x", Title: "Internal Server Error", Status: 500, Reason: ReasonInternal},
		{Type: "u", Title: "", Status: -1, Detail: "a \"quoted\" <b>&</b>\n\u2028\xff", Reason: "r\x00", RequestID: "é"},
		{},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(p); err != nil {
			t.Fatal(err)
		}
		if got := appendProblem(nil, p); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("appendProblem = %s, the encoder %s", got, want.Bytes())
		}
	}
}
