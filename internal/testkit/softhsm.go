package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

// SoftHSM facts that shape this file:
//   - SoftHSM reads SOFTHSM2_CONF (and so its token directory) at C_Initialize,
//     and crypto11 loads and initialises a module once per process, finalizing
//     it only when the last context closes.
//   - A running module does not see tokens that another process (softhsm2-util)
//     creates after C_Initialize.
// So each test process gets one token directory, set up once, and a pool of
// tokens is created in it before the module is first used, and topped up
// whenever no PKCS11Store of this process holds the module, which no store
// may start to initialise while the top-up runs (hsm.HoldModuleIdle);
// every SoftHSM call takes a fresh, uniquely labelled token from that pool, so
// parallel tests each have their own token. If parallel tests drain the pool
// while the module is held, a further token would be invisible until it is
// released, so the next caller waits for the release (see take). The pool is
// not made larger instead: every token in the directory is loaded by each
// softhsm2-util run and each C_Initialize, so 64 tokens cost seconds.

// softhsmPoolEnv overrides how many tokens a test process pre-creates.
const softhsmPoolEnv = "WCA_SOFTHSM_TOKENS"

const defaultSoftHSMPool = 24

// softhsmTokenWait bounds how long take waits for the module to be released
// when the pool is empty (a test that holds a store while it asks for another
// token would otherwise wait for itself).
const softhsmTokenWait = 90 * time.Second

// softhsmDirPrefix names the per-process token directories under os.TempDir;
// the suffix is the owning pid, so later runs can remove the leftovers of
// finished processes.
const softhsmDirPrefix = "workload-ca-softhsm-"

// SoftHSMToken is one initialised SoftHSM token created for a test.
type SoftHSMToken struct {
	// Config opens the token: module path, token label, user PIN.
	Config hsm.PKCS11Config
	// SOPIN is the security officer PIN.
	SOPIN string
	// Dir is the token's own directory inside SoftHSM's token directory.
	// Moving it away makes the token fail (see the hsm outage test).
	Dir string
}

type softhsmEnv struct {
	once    sync.Once
	err     error
	module  string
	util    string
	conf    string
	tokdir  string
	mu      sync.Mutex // guards pool, serial and token creation
	pool    []SoftHSMToken
	serial  int
	created int
	target  int // pool size to keep
}

var softhsm softhsmEnv

// SoftHSM returns the configuration of a fresh, initialised SoftHSM2 token
// that only this test uses. The module is SOFTHSM2_MODULE if set, else the
// usual Debian/Fedora paths. Without SoftHSM the test is skipped with a loud
// reason, or fails when CI=true.
func SoftHSM(t testing.TB) hsm.PKCS11Config {
	t.Helper()
	return NewSoftHSMToken(t).Config
}

// NewSoftHSMToken is SoftHSM with the token's SO PIN and directory, for tests
// that manipulate the token itself.
func NewSoftHSMToken(t testing.TB) SoftHSMToken {
	t.Helper()
	softhsm.once.Do(softhsm.setup)
	if softhsm.err != nil {
		requireComponent(t, "SoftHSM2", softhsm.err)
	}
	tok, err := softhsm.take()
	if err != nil {
		t.Fatalf("testkit: SoftHSM token: %v", err)
	}
	t.Logf("testkit: SoftHSM token %q in %s", tok.Config.TokenLabel, tok.Dir)
	return tok
}

// SoftHSMKeyStore opens an hsm.PKCS11Store on a fresh SoftHSM token and closes
// it when the test ends.
func SoftHSMKeyStore(t testing.TB) *hsm.PKCS11Store {
	t.Helper()
	cfg := SoftHSM(t)
	s, err := hsm.OpenPKCS11(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("testkit: open SoftHSM token %q: %v (tokens created after the module was "+
			"initialised are invisible to it; raise %s)", cfg.TokenLabel, err, softhsmPoolEnv)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("testkit: close SoftHSM store: %v", err)
		}
	})
	return s
}

// requireComponent skips the test loudly when a real component is missing, or
// fails it when CI=true: CI must never skip silently.
func requireComponent(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testkit: %s is required in CI but unavailable: %v", what, err)
	}
	t.Skipf("SKIPPING: %s not available (%v); install it or set CI=true to make this a failure", what, err)
}

func findSoftHSMModule() (string, error) {
	if m := os.Getenv("SOFTHSM2_MODULE"); m != "" {
		if _, err := os.Stat(m); err != nil {
			return "", fmt.Errorf("SOFTHSM2_MODULE=%s: %w", m, err)
		}
		return m, nil
	}
	for _, p := range []string{
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib64/pkcs11/libsofthsm2.so",
		"/usr/lib/pkcs11/libsofthsm2.so",
		"/usr/local/lib/softhsm/libsofthsm2.so",
		"/opt/homebrew/lib/softhsm/libsofthsm2.so",
	} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("libsofthsm2.so not found (set SOFTHSM2_MODULE)")
}

// setup runs once per process: it finds the module and softhsm2-util, removes
// token directories of test processes that have exited, creates this
// process's token directory and configuration, points SOFTHSM2_CONF at it, and
// fills the token pool.
func (e *softhsmEnv) setup() {
	e.module, e.err = findSoftHSMModule()
	if e.err != nil {
		return
	}
	e.util, e.err = exec.LookPath("softhsm2-util")
	if e.err != nil {
		return
	}
	removeStaleSoftHSMDirs()
	root, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", softhsmDirPrefix, os.Getpid()))
	if err != nil {
		e.err = err
		return
	}
	e.tokdir = filepath.Join(root, "tokens")
	if err := os.Mkdir(e.tokdir, 0o700); err != nil {
		e.err = err
		return
	}
	e.conf = filepath.Join(root, "softhsm2.conf")
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", e.tokdir)
	if err := os.WriteFile(e.conf, []byte(conf), 0o600); err != nil {
		e.err = err
		return
	}
	// The module reads this when crypto11 first initialises it in this process.
	if err := os.Setenv("SOFTHSM2_CONF", e.conf); err != nil {
		e.err = err
		return
	}
	n := defaultSoftHSMPool
	if v := os.Getenv(softhsmPoolEnv); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			e.err = fmt.Errorf("%s=%q is not a positive number", softhsmPoolEnv, v)
			return
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.target = n
	for range n {
		tok, err := e.create()
		if err != nil {
			e.err = err
			return
		}
		e.pool = append(e.pool, tok)
	}
}

// take hands out the next pooled token. While no PKCS11Store in this process
// holds the module (so the next C_Initialize will see new tokens) it first
// tops the pool up. If the pool is empty while the module is held, a token
// created now would be invisible to it, so take waits (up to
// softhsmTokenWait) for the module to be released by the other tests, then
// tops up; only past that wait does it create a token anyway, which is usable
// only if the module is not initialised when the test opens it.
func (e *softhsmEnv) take() (SoftHSMToken, error) {
	deadline := time.Now().Add(softhsmTokenWait)
	for {
		e.mu.Lock()
		if len(e.pool) < e.target/2 {
			// Held idle while the tokens are created: a store that starts
			// initialising the module meanwhile would not see them.
			if release, idle := hsm.HoldModuleIdle(e.module); idle {
				for len(e.pool) < e.target {
					tok, err := e.create()
					if err != nil {
						release()
						e.mu.Unlock()
						return SoftHSMToken{}, err
					}
					e.pool = append(e.pool, tok)
				}
				release()
			}
		}
		if len(e.pool) > 0 {
			tok := e.pool[0]
			e.pool = e.pool[1:]
			e.mu.Unlock()
			return tok, nil
		}
		if time.Now().After(deadline) {
			tok, err := e.create()
			e.mu.Unlock()
			return tok, err
		}
		e.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// create initialises one token with softhsm2-util and finds its directory as
// the one that appeared. Callers hold e.mu, so creations never overlap.
func (e *softhsmEnv) create() (SoftHSMToken, error) {
	before, err := listDirs(e.tokdir)
	if err != nil {
		return SoftHSMToken{}, err
	}
	e.serial++
	// Fixed width: OpenSC's pkcs11-tool matches --token-label as a prefix,
	// so "wca-N-2" would also select "wca-N-20" and log in with the wrong PIN.
	label := fmt.Sprintf("wca-%d-%05d", os.Getpid(), e.serial)
	pin, so := randomPIN(), randomPIN()
	cmd := exec.Command(e.util, "--init-token", "--free", "--label", label, "--so-pin", so, "--pin", pin)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+e.conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return SoftHSMToken{}, fmt.Errorf("softhsm2-util --init-token %s: %w: %s", label, err, strings.TrimSpace(string(out)))
	}
	after, err := listDirs(e.tokdir)
	if err != nil {
		return SoftHSMToken{}, err
	}
	var dir string
	for name := range after {
		if !before[name] {
			dir = filepath.Join(e.tokdir, name)
		}
	}
	if dir == "" {
		return SoftHSMToken{}, fmt.Errorf("softhsm2-util created token %s but no new directory appeared in %s", label, e.tokdir)
	}
	e.created++
	return SoftHSMToken{
		Config: hsm.PKCS11Config{Module: e.module, TokenLabel: label, PIN: pin},
		SOPIN:  so,
		Dir:    dir,
	}, nil
}

func listDirs(dir string) (map[string]bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, e := range ents {
		if e.IsDir() {
			m[e.Name()] = true
		}
	}
	return m, nil
}

func randomPIN() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// removeStaleSoftHSMDirs deletes token directories left by test processes
// that are no longer running. Tokens are not deleted while their process
// lives: SoftHSM keeps every token of its directory loaded, and a token whose
// files vanish breaks the slot scan for all others.
func removeStaleSoftHSMDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), softhsmDirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), softhsmDirPrefix)
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			_ = os.RemoveAll(m)
		}
	}
}

// SoftwareKeys is the software key store of the embedded default in a
// fresh temp directory, closed at cleanup.
func SoftwareKeys(t testing.TB) *hsm.SoftwareStore {
	t.Helper()
	ks, err := hsm.OpenSoftware(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("testkit: OpenSoftware: %v", err)
	}
	t.Cleanup(func() { _ = ks.Close() })
	return ks
}
