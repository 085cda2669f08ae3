package authz

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/cel-go/cel"

	"github.com/workload-ca/workload-ca/pkg/celexpr"
)

// Bounds on `when` conditions. They run on every matching request, over
// caller-influenced values (path, headers), so each evaluation is limited in
// cost; RE2 regular expressions keep matching linear. pkg/celexpr holds the
// bounds this package shares with the enrollment policy.
const (
	// MaxConditionBytes bounds the source length of one condition.
	MaxConditionBytes = celexpr.MaxBytes
	// ConditionCostLimit is the runtime cost budget of one evaluation (CEL
	// cost units: roughly one per operation and per element traversed). An
	// evaluation that exceeds it counts as false.
	ConditionCostLimit = 10_000
	// maxHeaderValueBytes bounds one header value handed to a condition.
	maxHeaderValueBytes = 1024
)

// condition is a compiled CEL expression over `source` and `request` that
// returns bool.
type condition struct {
	source  string
	headers []string // canonical header names the endpoint names (request.headers)
	prg     cel.Program
}

func newCELEnv() (*cel.Env, error) {
	return celexpr.NewEnv(
		// source: {"id", "trust_domain", "path"} (strings).
		cel.Variable("source", cel.MapType(cel.StringType, cel.StringType)),
		// request: {"method", "path": string, "headers": map(string,string),
		// "time": timestamp}.
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
	)
}

func compileCondition(env *cel.Env, src string, headers []string) (*condition, error) {
	prg, err := celexpr.Compile(env, src, ConditionCostLimit)
	if err != nil {
		return nil, fmt.Errorf("when: %w", err)
	}
	return &condition{source: src, headers: headers, prg: prg}, nil
}

// eval reports whether the condition holds. An evaluation error (a missing
// header, a type mismatch, the cost limit) is false: a condition that cannot
// be decided does not grant access.
func (c *condition) eval(sourceID, td, srcPath string, r *Request, path string) bool {
	hdr := make(map[string]string, len(c.headers))
	for _, h := range c.headers {
		if r.Header == nil {
			break
		}
		if vs, ok := r.Header[h]; ok && len(vs) > 0 {
			v := strings.Join(vs, ",")
			if len(v) > maxHeaderValueBytes {
				v = v[:maxHeaderValueBytes]
			}
			hdr[strings.ToLower(h)] = v
		}
	}
	t := r.Time
	if t.IsZero() {
		t = time.Unix(0, 0).UTC()
	}
	out, _, err := c.prg.Eval(map[string]any{
		"source": map[string]string{"id": sourceID, "trust_domain": td, "path": srcPath},
		"request": map[string]any{
			"method":  r.Method,
			"path":    path,
			"headers": hdr,
			"time":    t,
		},
	})
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}

// canonicalHeaders validates the header names an endpoint lists and returns
// them in canonical MIME form (how net/http keys http.Header).
func canonicalHeaders(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || strings.ContainsFunc(n, func(r rune) bool {
			return !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) {
			return nil, fmt.Errorf("headers: %q is not a header name", n)
		}
		switch strings.ToLower(n) {
		case "authorization", "proxy-authorization", "cookie", "set-cookie":
			return nil, fmt.Errorf("headers: %q carries credentials and cannot be used in a condition", n)
		}
		c := http.CanonicalHeaderKey(n)
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}
