//go:build cgo

package hsm

import (
	"context"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"
	pkgerrors "github.com/pkg/errors"
)

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		lost      bool
		loginFail bool
		poolFull  bool
	}{
		{"an invalid session means the context is lost", pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID), true, false, false},
		{"a removed device means the context is lost", pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED), true, false, false},
		{"a missing token means the context is lost", pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT), true, false, false},
		{"a lost login means the context is lost", pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN), true, false, false},
		{"a finalized module means the context is lost", pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED), true, false, false},
		{"a general error means the context is lost", pkcs11.Error(pkcs11.CKR_GENERAL_ERROR), true, false, false},
		{"a vanished object handle means the context is lost", pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID), true, false, false},
		{"crypto11's pkg/errors wrapping is seen through",
			pkgerrors.WithMessage(pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID), "failed"), true, false, false},
		{"fmt wrapping is seen through", fmt.Errorf("x: %w", pkcs11.Error(pkcs11.CKR_DEVICE_ERROR)), true, false, false},
		{"a bad mechanism is the caller's problem", pkcs11.Error(pkcs11.CKR_MECHANISM_INVALID), false, false, false},
		{"a bad data length is the caller's problem", pkcs11.Error(pkcs11.CKR_DATA_LEN_RANGE), false, false, false},
		{"a wrong PIN is a login failure", pkcs11.Error(pkcs11.CKR_PIN_INCORRECT), false, true, false},
		{"a locked PIN is a login failure", pkcs11.Error(pkcs11.CKR_PIN_LOCKED), false, true, false},
		{"a session pool timeout is saturation", fmt.Errorf("pool: %w", context.DeadlineExceeded), false, false, true},
		{"a plain error is none of these", fmt.Errorf("boom"), false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isConnectionLost(tc.err); got != tc.lost {
				t.Errorf("isConnectionLost = %v", got)
			}
			if got := isLoginRefused(tc.err); got != tc.loginFail {
				t.Errorf("isLoginRefused = %v", got)
			}
			if got := isPoolTimeout(tc.err); got != tc.poolFull {
				t.Errorf("isPoolTimeout = %v", got)
			}
		})
	}
}

func TestBackoffDoublesUpToTheMaximum(t *testing.T) {
	s := &PKCS11Store{cfg: PKCS11Config{MinBackoff: 250e6, MaxBackoff: 2e9}.withDefaults()}
	want := []string{"250ms", "500ms", "1s", "2s", "2s", "2s"}
	for i, w := range want {
		if got := s.backoff(i + 1).String(); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
}
