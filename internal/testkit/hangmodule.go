package testkit

import (
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// hangModuleSource is a PKCS#11 module that forwards to SoftHSM and blocks
// C_SignInit and C_Sign while a flag file exists (see the file's comment).
//
//go:embed hangmodule/hangmodule.c
var hangModuleSource []byte

// Environment variables the hang module reads when it is loaded.
const (
	hangTargetEnv = "WCA_HANG_TARGET" // path of the module it forwards to
	hangFlagEnv   = "WCA_HANG_FLAG"   // while this file exists, signing blocks
)

// HangingToken is a fresh SoftHSM token reached through a PKCS#11 module
// that hangs on purpose: while Hang is in effect every C_SignInit and C_Sign
// blocks, neither answering nor failing, like a network HSM behind a
// partition; after Release the blocked calls go on and return normally.
type HangingToken struct {
	// Config opens the token through the hang module (Config.Module).
	Config hsm.PKCS11Config
	// Flag is the file whose existence makes signing hang.
	Flag string
	// Env is what a child process (ca serve) needs in its environment for
	// the hang module to load: WCA_HANG_TARGET and WCA_HANG_FLAG.
	Env map[string]string
}

// HangingSoftHSM builds the hang module with gcc into a temp dir, in front of
// a private copy of the SoftHSM library (so that the hang module's SoftHSM is
// initialised and finalized independently of the other SoftHSM tests of the
// process), and returns a fresh token behind it. It sets WCA_HANG_TARGET and
// WCA_HANG_FLAG with t.Setenv, so the test must not be parallel; a child
// process gets them from Env. Without gcc or the PKCS#11 headers the test is
// skipped loudly (failed when CI=true), like a missing SoftHSM.
func HangingSoftHSM(t testing.TB) *HangingToken {
	t.Helper()
	tok := NewSoftHSMToken(t)
	dir := t.TempDir()
	module, err := buildHangModule(dir)
	if err != nil {
		requireComponent(t, "gcc and the PKCS#11 headers (for the hang module)", err)
	}
	target := filepath.Join(dir, "libsofthsm2-copy.so")
	if err := copyFile(tok.Config.Module, target); err != nil {
		t.Fatalf("testkit: copy %s: %v", tok.Config.Module, err)
	}
	h := &HangingToken{
		Config: tok.Config,
		Flag:   filepath.Join(dir, "hang"),
		Env:    map[string]string{},
	}
	h.Config.Module = module
	h.Env[hangTargetEnv] = target
	h.Env[hangFlagEnv] = h.Flag
	h.Env["SOFTHSM2_CONF"] = os.Getenv("SOFTHSM2_CONF") // set by the SoftHSM fixture
	t.Setenv(hangTargetEnv, target)
	t.Setenv(hangFlagEnv, h.Flag)
	t.Cleanup(func() { _ = os.Remove(h.Flag) }) // never leave a call blocked
	t.Logf("testkit: hang module %s in front of %s, flag %s", module, target, h.Flag)
	return h
}

// Hang makes every signature on the token block until Release.
func (h *HangingToken) Hang(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(h.Flag, nil, 0o600); err != nil {
		t.Fatalf("testkit: hang: %v", err)
	}
}

// Release lets the blocked calls, and every later one, go on.
func (h *HangingToken) Release(t testing.TB) {
	t.Helper()
	if err := os.Remove(h.Flag); err != nil && !os.IsNotExist(err) {
		t.Fatalf("testkit: release: %v", err)
	}
}

// Failure modes of C_GenerateKeyPair (SetFailure): every call answers
// CKR_GENERAL_ERROR while the token answers everything else (a refused
// template, as tpm2-pkcs11 reports one); the next call only (a transient
// failure under load); or generation and object searches both fail (a lost
// device).
const (
	FailGenerate     = "genfail"
	FailGenerateOnce = "genfail-once"
	FailDevice       = "down"
)

// SetFailure turns a failure mode on (on=true) or off.
func (h *HangingToken) SetFailure(t testing.TB, mode string, on bool) {
	t.Helper()
	p := h.Flag + "." + mode
	if on {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatalf("testkit: %s: %v", mode, err)
		}
		t.Cleanup(func() { _ = os.Remove(p) })
		return
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		t.Fatalf("testkit: %s off: %v", mode, err)
	}
}

// FailureArmed reports whether a mode's file still exists (FailGenerateOnce
// removes its own when it fires).
func (h *HangingToken) FailureArmed(mode string) bool {
	_, err := os.Stat(h.Flag + "." + mode)
	return err == nil
}

// buildHangModule compiles the hang module into dir and returns its path.
// The headers are the OASIS ones github.com/miekg/pkcs11 (crypto11's
// dependency) vendors, found through the go command.
func buildHangModule(dir string) (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/miekg/pkcs11").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m github.com/miekg/pkcs11: %w", err)
	}
	inc := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(inc, "pkcs11go.h")); err != nil {
		return "", fmt.Errorf("PKCS#11 headers: %w", err)
	}
	src := filepath.Join(dir, "hangmodule.c")
	if err := os.WriteFile(src, hangModuleSource, 0o600); err != nil {
		return "", err
	}
	lib := filepath.Join(dir, "libhangmodule.so")
	cmd := exec.Command(gcc, "-Wall", "-Werror", "-shared", "-fPIC", "-I", inc, "-o", lib, src, "-ldl", "-lpthread")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc: %w: %s", err, b)
	}
	return lib, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o700)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
