package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
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

// requestID takes a well-formed incoming X-Request-Id (at most 64 characters
// of [A-Za-z0-9._-]) or makes a random one, and echoes it in the answer.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !wellFormedID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
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

// metrics are the HTTP edge's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ca_http_requests_total",
			Help: "HTTP requests answered, by listener, route pattern, method and status code.",
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

// observe logs one JSON access-log line per request and counts it. The route
// label is chi's pattern ("/crl/{issuer}.crl"), never the raw path, so that
// label cardinality stays bounded.
func observe(log *slog.Logger, m *metrics, listener string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			elapsed := time.Since(start)
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			route := "unmatched"
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
				route = rc.RoutePattern()
			}
			attrs := []slog.Attr{
				slog.String("listener", listener),
				slog.String("request_id", RequestID(r.Context())),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", status),
				slog.Int("bytes", ww.BytesWritten()),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.String("remote", r.RemoteAddr),
			}
			if id := ClientSPIFFEID(r); id != "" {
				attrs = append(attrs, slog.String("client_spiffe_id", id))
			}
			log.LogAttrs(r.Context(), slog.LevelInfo, "http request", attrs...)
			if m != nil {
				m.requests.WithLabelValues(listener, route, r.Method, strconv.Itoa(status)).Inc()
				m.duration.WithLabelValues(listener, route).Observe(elapsed.Seconds())
			}
		})
	}
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
				writeProblem(w, r, http.StatusInternalServerError, ReasonInternal, "internal error; quote the request_id when reporting it")
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
				writeProblem(w, r, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "the request body exceeds the size limit")
				return
			}
			if r.Body != nil {
				r.Body = http.MaxBytesReader(w, r.Body, limit)
			}
			next.ServeHTTP(w, r)
		})
	}
}
