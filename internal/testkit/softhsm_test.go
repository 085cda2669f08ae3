package testkit

import (
	"log/slog"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// A drained pool while another test holds the module used to hand out a token
// created after C_Initialize, which the module never sees ("could not find
// PKCS#11 token", CI stop 22). take now waits for the release and tops up.
func TestSoftHSMTokenTakenWhileTheModuleIsHeldIsVisible(t *testing.T) {
	holder := SoftHSMKeyStore(t) // the module is now initialised in this process
	softhsm.mu.Lock()
	drained := softhsm.pool
	softhsm.pool = nil
	softhsm.mu.Unlock()
	t.Cleanup(func() {
		softhsm.mu.Lock()
		softhsm.pool = append(softhsm.pool, drained...)
		softhsm.mu.Unlock()
	})

	got := make(chan SoftHSMToken, 1)
	go func() {
		tok, err := softhsm.take()
		if err != nil {
			t.Errorf("take: %v", err)
		}
		got <- tok
	}()
	select {
	case tok := <-got:
		t.Fatalf("take returned token %q while the module was held and the pool empty", tok.Config.TokenLabel)
	case <-time.After(200 * time.Millisecond):
	}
	if err := holder.Close(); err != nil {
		t.Fatalf("close holder: %v", err)
	}
	tok := <-got
	s, err := hsm.OpenPKCS11(tok.Config, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("the token handed out after the wait is not visible: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
