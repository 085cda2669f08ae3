package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"
)

const openAPIPath = "../../api/openapi.yaml"

func init() {
	openapi3filter.RegisterBodyDecoder(PEMChainContentType, openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/openmetrics-text", openapi3filter.PlainBodyDecoder)
}

func loadOpenAPI(t *testing.T, servers ...string) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("api/openapi.yaml is not a valid document: %v", err)
	}
	if len(servers) > 0 {
		doc.Servers = nil
		for _, s := range servers {
			doc.Servers = append(doc.Servers, &openapi3.Server{URL: s})
		}
	}
	return doc
}

// validateExchange checks one real request and response against the document.
func validateExchange(t *testing.T, router routers.Router, req *http.Request, res *http.Response) {
	t.Helper()
	route, pathParams, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s: not in api/openapi.yaml: %v", req.Method, req.URL, err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: pathParams, Route: route},
		Status:                 res.StatusCode,
		Header:                 res.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		t.Errorf("%s %s -> %d does not match api/openapi.yaml: %v\nbody: %s", req.Method, req.URL, res.StatusCode, err, body)
	}
}

func TestRealResponsesMatchTheOpenAPIDocument(t *testing.T) {
	f := newFixture(t)
	rs := startServer(t, f)
	doc := loadOpenAPI(t, rs.apiURL, rs.publicURL)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	client := rs.client()

	type exchange struct {
		name, base, path string
		header           map[string]string
		setup            func()
		status           int
	}
	var etag string
	exchanges := []exchange{
		{name: "public healthz", base: rs.publicURL, path: "/healthz", status: 200},
		{name: "api healthz", base: rs.apiURL, path: "/healthz", status: 200},
		{name: "public readyz", base: rs.publicURL, path: "/readyz", status: 200},
		{name: "api readyz", base: rs.apiURL, path: "/readyz", status: 200},
		// Readiness results are cached for a second (health.go): each
		// change of a dependency is seen once the cached result is stale.
		{name: "readyz with the store down", base: rs.publicURL, path: "/readyz", status: 503, setup: func() { f.store.set(errBoom, 0); f.clock.Advance(readyCacheFor) }},
		{name: "readyz with the hsm down", base: rs.apiURL, path: "/readyz", status: 503, setup: func() { f.store.set(nil, 0); f.hsm.set(errBoom, 0); f.clock.Advance(readyCacheFor) }},
		{name: "public bundle", base: rs.publicURL, path: "/bundle.pem", status: 200, setup: func() { f.hsm.set(nil, 0) }},
		{name: "api bundle", base: rs.apiURL, path: "/bundle.pem", status: 200},
		{name: "bundle not modified", base: rs.publicURL, path: "/bundle.pem", status: 304, header: map[string]string{"If-None-Match": "<etag>"}},
		{name: "metrics", base: rs.publicURL, path: "/metrics", status: 200},
		{name: "metrics as OpenMetrics", base: rs.publicURL, path: "/metrics", status: 200, header: map[string]string{"Accept": "application/openmetrics-text; version=1.0.0"}},
	}
	for _, ex := range exchanges {
		t.Run(ex.name, func(t *testing.T) {
			if ex.setup != nil {
				ex.setup()
			}
			req, _ := http.NewRequest(http.MethodGet, ex.base+ex.path, nil)
			for k, v := range ex.header {
				req.Header.Set(k, strings.ReplaceAll(v, "<etag>", etag))
			}
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != ex.status {
				t.Fatalf("status = %d, want %d", res.StatusCode, ex.status)
			}
			if ex.path == "/bundle.pem" && etag == "" {
				etag = res.Header.Get("ETag")
			}
			validateExchange(t, router, req, res)
		})
	}

	// Problems for unknown paths and wrong methods are not operations of the
	// document; check their bodies against the Problem schema directly.
	problem := doc.Components.Schemas["Problem"].Value
	for _, path := range []string{"GET /nope", "POST /healthz"} {
		method, target, _ := strings.Cut(path, " ")
		req, _ := http.NewRequest(method, rs.publicURL+target, nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		p := decodeProblem(t, res)
		res.Body.Close()
		if err := problem.VisitJSON(map[string]any{
			"type": p.Type, "title": p.Title, "status": float64(p.Status), "detail": p.Detail,
			"reason": string(p.Reason), "request_id": p.RequestID,
		}, openapi3.EnableJSONSchema2020()); err != nil {
			t.Errorf("%s problem does not match the Problem schema: %v", path, err)
		}
	}
}

func TestEveryRouteIsInTheOpenAPIDocumentAndBack(t *testing.T) {
	f := newFixture(t)
	doc := loadOpenAPI(t)
	for listener, router := range map[string]chi.Router{"api": f.routes.API(), "public": f.routes.Public()} {
		served := map[string]bool{}
		err := chi.Walk(router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
			served[method+" "+route] = true
			item := doc.Paths.Find(route)
			if item == nil || item.GetOperation(method) == nil {
				t.Errorf("%s listener serves %s %s, which api/openapi.yaml does not describe", listener, method, route)
				return nil
			}
			if !slices.Contains(listeners(item), listener) {
				t.Errorf("%s %s is served on the %s listener but its x-listeners are %v", method, route, listener, listeners(item))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for path, item := range doc.Paths.Map() {
			if !slices.Contains(listeners(item), listener) {
				continue
			}
			for method := range item.Operations() {
				if !served[method+" "+path] {
					t.Errorf("api/openapi.yaml says the %s listener serves %s %s, but it does not", listener, method, path)
				}
			}
		}
	}
}

func listeners(item *openapi3.PathItem) []string {
	raw, _ := item.Extensions["x-listeners"].([]any)
	var out []string
	for _, v := range raw {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

func TestTheReasonEnumMatchesTheCode(t *testing.T) {
	doc := loadOpenAPI(t)
	var inDoc []string
	for _, v := range doc.Components.Schemas["Reason"].Value.Enum {
		inDoc = append(inDoc, v.(string))
	}
	var inCode []string
	for _, r := range AllReasons() {
		inCode = append(inCode, string(r))
	}
	if strings.Join(inDoc, ",") != strings.Join(inCode, ",") {
		t.Errorf("reason enum differs:\n doc:  %v\n code: %v", inDoc, inCode)
	}
}
