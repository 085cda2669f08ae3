//go:build cgo

package hsm_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// TestModuleInUseCountsOpenStores: ModuleInUse (what the SoftHSM fixture
// asks before creating tokens the module would not see) is true while a
// store holds the module and false once the last one closed, and an open
// that fails (no such token) leaves no use counted. It runs on the hang
// module's own copy of SoftHSM, whose path no parallel test shares.
func TestModuleInUseCountsOpenStores(t *testing.T) {
	tok := testkit.HangingSoftHSM(t)
	module := tok.Config.Module
	if hsm.ModuleInUse(module) {
		t.Fatal("in use before any store opened it")
	}
	bad := tok.Config
	bad.TokenLabel = "no-such-token"
	if s, err := hsm.OpenPKCS11(bad, slog.New(slog.DiscardHandler)); err == nil {
		_ = s.Close()
		t.Fatal("a store opened a token that does not exist")
	}
	if hsm.ModuleInUse(module) {
		t.Fatal("in use after an open that failed")
	}
	a, err := hsm.OpenPKCS11(tok.Config, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hsm.OpenPKCS11(tok.Config, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !hsm.ModuleInUse(module) {
		t.Fatal("not in use with two stores open")
	}
	_ = a.Close()
	if !hsm.ModuleInUse(module) {
		t.Fatal("not in use with one store still open")
	}
	_ = b.Close()
	if hsm.ModuleInUse(module) {
		t.Fatal("in use after both stores closed")
	}
}

// TestHoldModuleIdleKeepsStoresFromInitialising: while a fixture holds the
// module idle, a store that opens waits before initialising it (so tokens
// created meanwhile are seen); with a store open the module cannot be held.
func TestHoldModuleIdleKeepsStoresFromInitialising(t *testing.T) {
	tok := testkit.HangingSoftHSM(t)
	release, ok := hsm.HoldModuleIdle(tok.Config.Module)
	if !ok {
		t.Fatal("the module is held by no store, yet not idle")
	}
	opened := make(chan *hsm.PKCS11Store, 1)
	go func() {
		s, err := hsm.OpenPKCS11(tok.Config, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Error(err)
		}
		opened <- s
	}()
	select {
	case <-opened:
		t.Fatal("a store opened the module while it was held idle")
	case <-time.After(300 * time.Millisecond):
	}
	release()
	var s *hsm.PKCS11Store
	select {
	case s = <-opened:
	case <-time.After(30 * time.Second):
		t.Fatal("the store did not open after the release")
	}
	if s == nil {
		return
	}
	if _, ok := hsm.HoldModuleIdle(tok.Config.Module); ok {
		t.Fatal("held idle while a store holds the module")
	}
	_ = s.Close()
	release, ok = hsm.HoldModuleIdle(tok.Config.Module)
	if !ok {
		t.Fatal("not idle after the store closed")
	}
	release()
}
