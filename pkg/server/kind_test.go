package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/enroll"
)

func TestEachKindMapsToOneStatus(t *testing.T) {
	tests := []struct {
		kind   Kind
		status int
	}{
		{KindInternal, 500},
		{KindInput, 400},
		{KindCredential, 401},
		{KindBearerMissing, 401},
		{KindBearerInvalid, 401},
		{KindPolicy, 403},
		{KindNotFound, 404},
		{KindMethod, 405},
		{KindConflict, 409},
		{KindTooLarge, 413},
		{KindUnavailable, 503},
		{Kind("bogus"), 500},
	}
	if len(tests)-1 != len(kindStatus) {
		t.Fatalf("the table covers %d kinds, kindStatus has %d", len(tests)-1, len(kindStatus))
	}
	for _, tt := range tests {
		if got := tt.kind.Status(); got != tt.status {
			t.Errorf("kind %q is %d, want %d", tt.kind, got, tt.status)
		}
	}
}

func TestTheChallengeIsChosenByKind(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		status    int
		challenge string
	}{
		{"a missing bearer token is challenged for one", &Error{Kind: KindBearerMissing, Reason: ReasonUnauthorized, Detail: "no token"},
			401, `Bearer realm="workload-ca"`},
		{"an expired token is challenged as invalid_token", fmt.Errorf("decide: %w", &enroll.Error{Reason: enroll.ReasonTokenExpired, Detail: "expired"}),
			401, `Bearer realm="workload-ca", error="invalid_token"`},
		{"a replayed token is challenged as invalid_token", &enroll.Error{Reason: enroll.ReasonTokenReplayed},
			401, `Bearer realm="workload-ca", error="invalid_token"`},
		{"an unreachable token issuer is 503 without a challenge", &enroll.Error{Reason: enroll.ReasonTokenIssuerUnavailable},
			503, ""},
		{"a missing client certificate is 401 without a challenge", &Error{Kind: KindCredential, Reason: ReasonUnauthorized},
			401, ""},
		{"a renewal without a current certificate is 401 without a challenge", &enroll.Error{Reason: enroll.ReasonUnauthorized},
			401, ""},
		{"a policy refusal has no challenge", &enroll.Error{Reason: enroll.ReasonPolicyDenied},
			403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			edge{log: slog.New(slog.NewJSONHandler(io.Discard, nil))}.handle(func(http.ResponseWriter, *http.Request) error { return tt.err }).
				ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/enroll", nil))
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
		})
	}
}

func TestAnErrorWithoutAKindIsAGeneric500(t *testing.T) {
	kind, reason, detail := classify(&Error{Reason: ReasonBadRequest, Detail: "secret internal detail"})
	if kind.Status() != 500 || reason != ReasonInternal || detail != internalDetail {
		t.Errorf("classify = %d %s %q", kind.Status(), reason, detail)
	}
}
