package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/workload-ca/workload-ca/internal/jsonappend"
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
// better than the central mapping (classify). Kind decides the status and the
// challenge (kind.go); Reason is the stable code. Detail is shown to the
// client, so it must not carry internals or secrets; Err is logged, never
// shown.
type Error struct {
	Kind   Kind
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

// enrollKinds says what each refusal of pkg/enroll means to the client.
// Token problems are the credential's fault (RFC 9110 section 15.5.2),
// including a replayed token, which is a spent credential rather than a
// conflict with the state of the resource; a token issuer we cannot reach is
// ours; a policy refusal, a revoked or superseded certificate is 403; a bad
// CSR or TTL is 400. A reason missing here is a 500.
var enrollKinds = map[string]Kind{
	enroll.ReasonTokenMalformed:           KindBearerInvalid,
	enroll.ReasonTokenExpired:             KindBearerInvalid,
	enroll.ReasonTokenNotYetValid:         KindBearerInvalid,
	enroll.ReasonTokenBadSignature:        KindBearerInvalid,
	enroll.ReasonTokenUnknownIssuer:       KindBearerInvalid,
	enroll.ReasonTokenWrongAudience:       KindBearerInvalid,
	enroll.ReasonTokenReplayed:            KindBearerInvalid,
	enroll.ReasonTokenIssuerUnavailable:   KindUnavailable,
	enroll.ReasonStoreUnavailable:         KindUnavailable,
	enroll.ReasonPolicyDenied:             KindPolicy,
	enroll.ReasonCertificateRevoked:       KindPolicy,
	enroll.ReasonCertificateSuperseded:    KindPolicy,
	enroll.ReasonReauthenticationRequired: KindPolicy,
	enroll.ReasonCSRMalformed:             KindInput,
	enroll.ReasonCSRBadSignature:          KindInput,
	enroll.ReasonCSRWeakKey:               KindInput,
	enroll.ReasonCSRForbiddenExtension:    KindInput,
	enroll.ReasonTTLTooLong:               KindInput,
	enroll.ReasonTTLInvalid:               KindInput,
	enroll.ReasonKeyReused:                KindInput,
	enroll.ReasonUnauthorized:             KindCredential,
}

// enrollAnswer is the answer to an enroll.Error: its kind from enrollKinds,
// its reason unchanged, its detail unless the failure is ours.
func enrollAnswer(e *enroll.Error) (Kind, Reason, string) {
	kind, ok := enrollKinds[e.Reason]
	switch {
	case !ok:
		return KindInternal, ReasonInternal, internalDetail
	case e.Reason == enroll.ReasonTokenIssuerUnavailable:
		return kind, ReasonTokenIssuerUnavailable, "the token issuer's keys are unavailable; retry later"
	case e.Reason == enroll.ReasonStoreUnavailable:
		return kind, ReasonStoreUnavailable, "the database is unavailable; retry later"
	}
	return kind, Reason(e.Reason), e.Detail
}

// classify maps an error to its kind, reason and client-facing detail. It is
// the only place that decides what an error means to the client; the kind
// decides the status (Kind.Status). Anything it does not recognise is a 500
// with a generic detail.
func classify(err error) (kind Kind, reason Reason, detail string) {
	var e *Error
	var tooLarge *http.MaxBytesError
	var enrollErr *enroll.Error
	var unsafeRollback *bundle.UnsafeRollbackError
	var reserved *issuer.ReservedNameError
	switch {
	case errors.As(err, &e):
		if e.Kind == KindInternal {
			return KindInternal, ReasonInternal, internalDetail
		}
		return e.Kind, e.Reason, e.Detail
	case errors.As(err, &enrollErr):
		return enrollAnswer(enrollErr)
	case errors.As(err, &reserved):
		return KindPolicy, ReasonPolicyDenied, reserved.Error()
	case errors.Is(err, issuer.ErrReservedName):
		return KindPolicy, ReasonPolicyDenied, "the request names a name reserved for the CA"
	case isJWTProblem(err):
		return jwtProblem(err)
	case errors.As(err, &tooLarge):
		return KindTooLarge, ReasonBodyTooLarge, "the request body exceeds the size limit"
	case errors.Is(err, hsm.ErrPINRefused):
		return KindUnavailable, ReasonHSMPINRefused,
			"the HSM token refused the PIN; no login is attempted until the CA is reloaded (SIGHUP) or restarted"
	case errors.Is(err, hsm.ErrUnsupported):
		return KindUnavailable, ReasonHSMUnsupported,
			"the HSM token does not support a key type or operation this needs (a configuration error; see `ca hsm check`)"
	case errors.Is(err, hsm.ErrUnavailable):
		return KindUnavailable, ReasonHSMUnavailable, "the key store is unavailable; retry later"
	case errors.Is(err, store.ErrUnavailable):
		return KindUnavailable, ReasonStoreUnavailable, "the database is unavailable; retry later"
	case errors.Is(err, context.DeadlineExceeded):
		// The request's deadline (requestDeadline) passed while a
		// dependency had not answered; the HSM and external fetches map
		// their own timeouts above, so what is left is the database.
		return KindUnavailable, ReasonStoreUnavailable, "the database did not answer within the request deadline; retry later"
	case errors.Is(err, store.ErrNotFound):
		return KindNotFound, ReasonNotFound, "no such resource"
	case errors.Is(err, bundle.ErrNoBundle):
		return KindUnavailable, ReasonBundleUnavailable, "no trust bundle has been published yet; retry later"
	case errors.As(err, &unsafeRollback):
		return KindConflict, ReasonRollbackUnsafe, rollbackUnsafeDetail(unsafeRollback)
	case errors.Is(err, issuer.ErrNothingPrepared):
		return KindNotFound, ReasonNotFound, "no prepared issuer to abandon (or the id named is not prepared)"
	case errors.Is(err, bundle.ErrInvalidRollback):
		return KindInput, ReasonRollbackInvalid, "to_sequence must name an earlier bundle version"
	case errors.Is(err, issuer.ErrRotationInProgress):
		return KindConflict, ReasonRotationInProgress, "a prepared issuer exists; activate it before rotating again"
	case errors.Is(err, issuer.ErrNotReady):
		return KindConflict, ReasonActivationNotReady, "no prepared issuer has been published for the overlap yet"
	case errors.Is(err, issuer.ErrOfflineRoot):
		return KindConflict, ReasonRootOffline, "the root key is offline; use the offline-root CSR flow"
	case errors.Is(err, revoke.ErrInvalidReason):
		return KindInput, ReasonRevocationReasonInvalid,
			"reason must be one of " + strings.Join(revoke.ReasonNames(), ", ")
	case errors.Is(err, revoke.ErrInvalidSerial):
		return KindInput, ReasonBadRequest, "the serial number must be 1 to 40 hex digits"
	case errors.Is(err, store.ErrInvalidQuery):
		return KindInput, ReasonBadRequest, "the query (filter or cursor) is malformed"
	}
	return KindInternal, ReasonInternal, internalDetail
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
	kind, reason, detail := classify(err)
	status := kind.Status()
	id := RequestID(r.Context())
	switch {
	case e.bursts != nil && (unavailableReason(reason) || reason == ReasonOverloaded):
		e.bursts.log(r.Context(), e.log, reason, status, id, err)
	case status >= 500:
		e.log.ErrorContext(r.Context(), "request failed", "request_id", id, "status", status, "reason", string(reason), "err", err)
	default:
		e.log.DebugContext(r.Context(), "request refused", "request_id", id, "status", status, "reason", string(reason), "err", err)
	}
	writeProblem(w, r, kind, reason, detail)
}

// writeProblem writes the problem+json answer of kind: its status, its
// WWW-Authenticate challenge if it has one, and Retry-After for an
// unavailable dependency.
func writeProblem(w http.ResponseWriter, r *http.Request, kind Kind, reason Reason, detail string) {
	status := kind.Status()
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
	if c := kind.challenge(); c != "" {
		h.Set("WWW-Authenticate", c)
	}
	setRetryAfter(w, kind, reason)
	w.WriteHeader(status)
	_, _ = w.Write(appendProblem(make([]byte, 0, 160+len(p.Detail)+len(p.RequestID)), p))
}

// appendProblem appends p as json.NewEncoder(w).Encode(p) writes it (the
// fields in order, omitempty, a final newline), without the encoder's
// reflection: every refusal is answered with one, anonymous floods
// included (TestAppendProblemWritesWhatTheEncoderWrote).
func appendProblem(b []byte, p Problem) []byte {
	b = append(b, `{"type":`...)
	b = jsonappend.String(b, p.Type)
	b = append(b, `,"title":`...)
	b = jsonappend.String(b, p.Title)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(p.Status), 10)
	if p.Detail != "" {
		b = append(b, `,"detail":`...)
		b = jsonappend.String(b, p.Detail)
	}
	b = append(b, `,"reason":`...)
	b = jsonappend.String(b, string(p.Reason))
	if p.RequestID != "" {
		b = append(b, `,"request_id":`...)
		b = jsonappend.String(b, p.RequestID)
	}
	return append(b, "}\n"...)
}

// writeJSON writes v as a JSON answer with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}
