package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// RequestIDHeader carries the request id in both directions.
const RequestIDHeader = "X-Request-Id"

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestIDs makes the ids of requests that come without a well-formed
// X-Request-Id: a random per-process prefix (64 bits from crypto/rand, drawn
// once) and a counter, so ids are unique within the process and, with
// overwhelming probability, across replicas and restarts, without a random
// read per request. They are correlation ids, not secrets: the counter shows
// how many requests this process has answered.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

// next is prefix, '-' and the counter in base 36: at most 30 characters of
// [0-9a-z-], which wellFormedID accepts.
func (g *requestIDs) next() string {
	var buf [32]byte
	b := append(buf[:0], g.prefix...)
	return string(strconv.AppendUint(b, g.n.Add(1), 36))
}

func wellFormedID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}

// methodLabel maps a client's HTTP method to a fixed set (the methods this
// server or a CORS preflight can meaningfully use) plus "other", for metric
// labels and log fields: a client can send any token as a method, and
// labelling by it would grow memory and /metrics without bound.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// metrics are the HTTP edge's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_http_requests_total",
			Help: "HTTP requests answered, by listener, route pattern, method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or other) and status code.",
		}, []string{"listener", "route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ca_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by listener and route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"listener", "route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// accessLog is one listener's request logging and counting. The route label
// is chi's pattern ("/crl/{issuer}.crl"), never the raw path, and the method
// is one of a fixed set (methodLabel), so that label cardinality stays
// bounded whatever clients send.
type accessLog struct {
	listener string
	log      *slog.Logger // with the listener attribute already encoded
	ids      *requestIDs
	metrics  *metrics
	// artifactLevel is the level of successful requests for the routes in
	// artifacts, of which one in artifactSample is logged (every one at 0
	// or 1); their failures (status >= 400) are all logged, at info.
	artifactLevel  slog.Level
	artifactSample uint64
	artifacts      map[string]bool
	routes         sync.Map // route pattern -> *routeStats
}

// routeStats are one route's metric children, resolved once instead of
// hashing the label values on every request.
type routeStats struct {
	level    slog.Level
	artifact bool
	answered atomic.Uint64 // successful answers, for the artifact sample
	duration prometheus.Observer
	counts   sync.Map // methodCode -> prometheus.Counter
}

type methodCode struct {
	method string
	code   int
}

func (a *accessLog) route(pattern string) *routeStats {
	if s, ok := a.routes.Load(pattern); ok {
		return s.(*routeStats)
	}
	s := &routeStats{level: slog.LevelInfo}
	if a.artifacts[pattern] {
		s.level, s.artifact = a.artifactLevel, true
	}
	if a.metrics != nil {
		s.duration = a.metrics.duration.WithLabelValues(a.listener, pattern)
	}
	got, _ := a.routes.LoadOrStore(pattern, s)
	return got.(*routeStats)
}

func (a *accessLog) count(s *routeStats, pattern, method string, code int) {
	k := methodCode{method, code}
	c, ok := s.counts.Load(k)
	if !ok {
		c, _ = s.counts.LoadOrStore(k, a.metrics.requests.WithLabelValues(a.listener, pattern, method, strconv.Itoa(code)))
	}
	c.(prometheus.Counter).Inc()
}

// middleware takes a well-formed incoming X-Request-Id (at most 64
// characters of [A-Za-z0-9._-]) or makes one, echoes it in the answer and
// puts it in the request's context; then, after the request, logs one JSON
// access-log line (request_id, method, path, status, bytes, duration_ms,
// remote, client_spiffe_id over mTLS) and counts it.
func (a *accessLog) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(RequestIDHeader)
		if !wellFormedID(id) {
			id = a.ids.next()
		}
		w.Header()[RequestIDHeader] = []string{id}
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		r = r.WithContext(ctx)
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		elapsed := time.Since(start)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		route := ""
		if rc := chi.RouteContext(ctx); rc != nil {
			route = rc.RoutePattern()
		}
		if route == "" {
			route = "unmatched"
		}
		rs := a.route(route)
		level, sample := rs.level, uint64(0)
		switch {
		case !rs.artifact:
		case status >= http.StatusBadRequest:
			level = slog.LevelInfo
		case a.artifactSample > 1:
			sample = a.artifactSample
		}
		if (sample == 0 || (rs.answered.Add(1)-1)%sample == 0) && a.log.Enabled(ctx, level) {
			a.logLine(ctx, level, r, id, status, ww.BytesWritten(), elapsed, sample)
		}
		if a.metrics != nil {
			a.count(rs, route, methodLabel(r.Method), status)
			rs.duration.Observe(elapsed.Seconds())
		}
	})
}

// logLine writes one access-log line; sample > 1 marks a line that stands
// for one in sample successful artifact answers.
func (a *accessLog) logLine(ctx context.Context, level slog.Level, r *http.Request, id string, status, bytes int, elapsed time.Duration, sample uint64) {
	const msg = "http request"
	reqID := slog.String("request_id", id)
	method := slog.String("method", methodLabel(r.Method))
	path := slog.String("path", r.URL.Path)
	st := slog.Int("status", status)
	n := slog.Int("bytes", bytes)
	dur := slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000)
	remote := slog.String("remote", r.RemoteAddr)
	if spiffeID := ClientSPIFFEID(r); spiffeID != "" {
		a.log.LogAttrs(ctx, level, msg, reqID, method, path, st, n, dur, remote, slog.String("client_spiffe_id", spiffeID))
		return
	}
	if sample > 1 {
		a.log.LogAttrs(ctx, level, msg, reqID, method, path, st, n, dur, remote, slog.Uint64("sample_one_in", sample))
		return
	}
	a.log.LogAttrs(ctx, level, msg, reqID, method, path, st, n, dur, remote)
}

// ClientSPIFFEID returns the SPIFFE ID (the first spiffe:// URI SAN) of the
// verified client certificate the request came with, or "".
func ClientSPIFFEID(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	for _, u := range r.TLS.PeerCertificates[0].URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

// recoverer turns a panic into a logged 500 problem. http.ErrAbortHandler is
// re-raised, as net/http expects.
func recoverer(e edge) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if v == http.ErrAbortHandler {
					panic(v)
				}
				e.log.ErrorContext(r.Context(), "panic while handling request",
					"request_id", RequestID(r.Context()), "panic", v, "stack", string(debug.Stack()))
				writeProblem(w, r, KindInternal, ReasonInternal, internalDetail)
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// limitBody refuses a declared Content-Length above limit with 413 at once and
// caps the body reader, so a handler reading past the limit gets an
// *http.MaxBytesError, which classify maps to 413 body_too_large.
func limitBody(limit int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > limit {
				writeProblem(w, r, KindTooLarge, ReasonBodyTooLarge, "the request body exceeds the size limit")
				return
			}
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, limit)
			}
			next.ServeHTTP(w, r)
		})
	}
}
