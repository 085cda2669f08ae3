package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/workload-ca/workload-ca/pkg/bundle"
	"github.com/workload-ca/workload-ca/pkg/enroll"
	"github.com/workload-ca/workload-ca/pkg/hsm"
	"github.com/workload-ca/workload-ca/pkg/issuer"
	"github.com/workload-ca/workload-ca/pkg/revoke"
	"github.com/workload-ca/workload-ca/pkg/store"
)

// ProblemContentType is the media type of every error answer (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem is the body of an error answer (RFC 9457 plus reason and
// request_id). Type is a URN built from Reason.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Reason    Reason `json:"reason"`
	RequestID string `json:"request_id,omitempty"`
}

// Error is an error that knows its client-facing answer. Lower layers return
// sentinel or typed errors; handlers wrap them in *Error only when they know
// better than the central mapping (classify). Detail is shown to the client,
// so it must not carry internals or secrets; Err is logged, never shown.
type Error struct {
	Status int
	Reason Reason
	Detail string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Reason) + ": " + e.Detail + ": " + e.Err.Error()
	}
	return string(e.Reason) + ": " + e.Detail
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// HandlerFunc is an HTTP handler that returns its failure instead of writing
// it. A handler that returns an error must not have written anything yet.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// classify maps an error to its status, reason and client-facing detail. It is
// the only place that decides statuses for errors. Anything it does not
// recognise is a 500 with a generic detail.
func classify(err error) (status int, reason Reason, detail string) {
	var e *Error
	var tooLarge *http.MaxBytesError
	var enrollErr *enroll.Error
	var unsafeRollback *bundle.UnsafeRollbackError
	switch {
	case errors.As(err, &e):
		return e.Status, e.Reason, e.Detail
	case errors.As(err, &enrollErr):
		return enrollProblem(enrollErr)
	case errors.Is(err, issuer.ErrReservedName):
		return reservedNameProblem(err)
	case isJWTProblem(err):
		return jwtProblem(err)
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "the request body exceeds the size limit"
	case errors.Is(err, hsm.ErrPINRefused):
		return http.StatusServiceUnavailable, ReasonHSMPINRefused,
			"the HSM token refused the PIN; no login is attempted until the CA is reloaded (SIGHUP) or restarted"
	case errors.Is(err, hsm.ErrUnavailable):
		return http.StatusServiceUnavailable, ReasonHSMUnavailable, "the key store is unavailable; retry later"
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, ReasonStoreUnavailable, "the database is unavailable; retry later"
	case errors.Is(err, context.DeadlineExceeded):
		// The request's deadline (requestDeadline) passed while a
		// dependency had not answered; the HSM and external fetches map
		// their own timeouts above, so what is left is the database.
		return http.StatusServiceUnavailable, ReasonStoreUnavailable, "the database did not answer within the request deadline; retry later"
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, ReasonNotFound, "no such resource"
	case errors.Is(err, bundle.ErrNoBundle):
		return http.StatusServiceUnavailable, ReasonBundleUnavailable, "no trust bundle has been published yet; retry later"
	case errors.As(err, &unsafeRollback):
		return http.StatusConflict, ReasonRollbackUnsafe, rollbackUnsafeDetail(unsafeRollback)
	case errors.Is(err, issuer.ErrNothingPrepared):
		return http.StatusNotFound, ReasonNotFound, "no prepared issuer to abandon (or the id named is not prepared)"
	case errors.Is(err, bundle.ErrInvalidRollback):
		return http.StatusBadRequest, ReasonRollbackInvalid, "to_sequence must name an earlier bundle version"
	case errors.Is(err, issuer.ErrRotationInProgress):
		return http.StatusConflict, ReasonRotationInProgress, "a prepared issuer exists; activate it before rotating again"
	case errors.Is(err, issuer.ErrNotReady):
		return http.StatusConflict, ReasonActivationNotReady, "no prepared issuer has been published for the overlap yet"
	case errors.Is(err, issuer.ErrOfflineRoot):
		return http.StatusConflict, ReasonRootOffline, "the root key is offline; use the offline-root CSR flow"
	case errors.Is(err, revoke.ErrInvalidReason):
		return http.StatusBadRequest, ReasonRevocationReasonInvalid,
			"reason must be one of " + strings.Join(revoke.ReasonNames(), ", ")
	case errors.Is(err, revoke.ErrInvalidSerial):
		return http.StatusBadRequest, ReasonBadRequest, "the serial number must be 1 to 40 hex digits"
	case errors.Is(err, store.ErrInvalidQuery):
		return http.StatusBadRequest, ReasonBadRequest, "the query (filter or cursor) is malformed"
	}
	return http.StatusInternalServerError, ReasonInternal, "internal error; quote the request_id when reporting it"
}

// edge turns HandlerFuncs into http.Handlers and errors into problems.
type edge struct {
	log    *slog.Logger
	bursts *burstLog // unavailable dependencies are logged once per burst (deadline.go)
}

// handle wraps h once: its error, if any, becomes a problem+json answer.
func (e edge) handle(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			e.fail(w, r, err)
		}
	})
}

// fail writes err as a problem and logs it: server-side failures at error
// level with the cause, client mistakes at debug level.
func (e edge) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, reason, detail := classify(err)
	id := RequestID(r.Context())
	switch {
	case e.bursts != nil && (unavailableReason(reason) || reason == ReasonOverloaded):
		e.bursts.log(r.Context(), e.log, reason, status, id, err)
	case status >= 500:
		e.log.ErrorContext(r.Context(), "request failed", "request_id", id, "status", status, "reason", string(reason), "err", err)
	default:
		e.log.DebugContext(r.Context(), "request refused", "request_id", id, "status", status, "reason", string(reason), "err", err)
	}
	writeProblem(w, r, status, reason, detail)
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, reason Reason, detail string) {
	p := Problem{
		Type:      "urn:workload-ca:problem:" + string(reason),
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		Reason:    reason,
		RequestID: RequestID(r.Context()),
	}
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	setRetryAfter(w, status, reason)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON writes v as a JSON answer with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}
