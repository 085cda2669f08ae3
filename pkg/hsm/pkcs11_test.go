//go:build cgo

package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workload-ca/workload-ca/internal/clock"
	"github.com/workload-ca/workload-ca/internal/testkit"
	"github.com/workload-ca/workload-ca/pkg/hsm"
)

func TestPKCS11KeysAreGeneratedSensitiveAndNonExtractable(t *testing.T) {
	t.Parallel()
	tok := testkit.NewSoftHSMToken(t)
	s, err := hsm.OpenPKCS11(tok.Config, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("OpenPKCS11: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	for _, kt := range allKeyTypes {
		name := "ca-" + string(kt)
		key, err := s.Generate(ctx, name, kt)
		if err != nil {
			t.Fatalf("Generate %s: %v", kt, err)
		}
		a, err := s.Attributes(ctx, key.URI)
		if err != nil {
			t.Fatalf("Attributes: %v", err)
		}
		if a.Label != name || len(a.ID) != 16 {
			t.Errorf("%s: label %q, id %x", kt, a.Label, a.ID)
		}
		if !a.Token || !a.Private || !a.Sensitive || a.Extractable || !a.AlwaysSensitive ||
			!a.NeverExtractable || !a.Local || !a.Sign || a.Decrypt {
			t.Errorf("%s: private key attributes %+v, want token, private, sensitive, "+
				"never extractable, local, sign-only", kt, a)
		}
		// Find by CKA_ID alone, percent-encoded as RFC 7512 says.
		var idURI strings.Builder
		idURI.WriteString("pkcs11:token=" + tok.Config.TokenLabel + ";id=")
		for _, c := range a.ID {
			fmt.Fprintf(&idURI, "%%%02x", c)
		}
		byID, err := s.Find(ctx, idURI.String())
		if err != nil {
			t.Fatalf("Find by id: %v", err)
		}
		if byID.URI != key.URI {
			t.Errorf("Find by id returned URI %q, want %q", byID.URI, key.URI)
		}
	}

	// Read the same attributes from outside the process with OpenSC's
	// pkcs11-tool, so the check does not rest on our own reading.
	tool, err := exec.LookPath("pkcs11-tool")
	if err != nil {
		t.Logf("pkcs11-tool not installed; skipping the external attribute check")
		return
	}
	out, err := exec.Command(tool, "--module", tok.Config.Module, "--token-label", tok.Config.TokenLabel,
		"--login", "--pin", tok.Config.PIN, "--list-objects", "--type", "privkey").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	blocks := strings.Split(string(out), "Private Key Object")
	found := 0
	for _, blk := range blocks[1:] {
		if !strings.Contains(blk, "label:      ca-") {
			continue
		}
		found++
		if !strings.Contains(blk, "Access:     sensitive, always sensitive, never extractable, local") {
			t.Errorf("pkcs11-tool reports a CA key that is not sensitive and non-extractable:\n%s", blk)
		}
	}
	if found != len(allKeyTypes) {
		t.Errorf("pkcs11-tool listed %d CA private keys, want %d:\n%s", found, len(allKeyTypes), out)
	}
}

func TestPKCS11ConfigNeverPrintsThePIN(t *testing.T) {
	t.Parallel()
	cfg := hsm.PKCS11Config{Module: "/m.so", TokenLabel: "tok", PIN: "s3cr3t-pin"}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("opening", "hsm", cfg)
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logged.String()} {
		if strings.Contains(out, "s3cr3t-pin") {
			t.Errorf("PIN printed: %s", out)
		}
	}
}

func TestPKCS11WrongPINIsNotReportedAsUnavailable(t *testing.T) {
	t.Parallel()
	cfg := testkit.SoftHSM(t)
	cfg.PIN = "wrong-pin"
	_, err := hsm.OpenPKCS11(cfg, nil)
	if err == nil {
		t.Fatal("OpenPKCS11 with a wrong PIN succeeded")
	}
	if errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("wrong PIN reported as transient ErrUnavailable: %v", err)
	}
}

func TestPINFromFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr bool
	}{
		{"a trailing newline is dropped", write("nl", "1234\n"), "1234", false},
		{"a trailing CRLF is dropped", write("crlf", "1234\r\n"), "1234", false},
		{"inner spaces are kept", write("sp", "12 34"), "12 34", false},
		{"an empty file is an error", write("empty", "\n"), "", true},
		{"a missing file is an error", filepath.Join(dir, "missing"), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hsm.PINFromFile(tc.path)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("PINFromFile = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "1234") {
				t.Errorf("error leaks file content: %v", err)
			}
		})
	}
}

// TestPKCS11PingFindsTheKeysWithoutSigning: readiness probes (anyone may
// make /readyz call Ping) must not make a CA key sign.
func TestPKCS11PingFindsTheKeysWithoutSigning(t *testing.T) {
	t.Parallel()
	tok := testkit.NewSoftHSMToken(t)
	s, err := hsm.OpenPKCS11(tok.Config, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("OpenPKCS11: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping before any key: %v", err)
	}
	for _, kt := range []hsm.KeyType{hsm.ECDSAP256, hsm.RSA3072} {
		if _, err := s.Generate(ctx, "ca-"+string(kt), kt); err != nil {
			t.Fatalf("Generate %s: %v", kt, err)
		}
	}
	for range 5 {
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("Ping with keys: %v", err)
		}
	}
	if n := hsm.Signatures(s); n != 0 {
		t.Errorf("5 Pings asked the token for %d signatures, want none", n)
	}
}

// TestPKCS11PingAloneNoticesALostTokenAndItsReturn: with nothing signing,
// Ping is the first to meet the outage (its key search finds nothing) and,
// after the backoff, the token's return. Not parallel, like the outage test
// below (a token taken away needs the module re-initialised).
func TestPKCS11PingAloneNoticesALostTokenAndItsReturn(t *testing.T) {
	tok := testkit.NewSoftHSMToken(t)
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg := tok.Config
	cfg.MinBackoff, cfg.MaxBackoff = time.Second, 4*time.Second
	s, err := hsm.OpenPKCS11(cfg, slog.New(slog.DiscardHandler), hsm.WithClock(clk))
	if err != nil {
		t.Fatalf("OpenPKCS11: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	if _, err := s.Generate(ctx, "issuing-ca", hsm.ECDSAP256); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping before the outage: %v", err)
	}
	away := filepath.Join(filepath.Dir(filepath.Dir(tok.Dir)), "away-"+filepath.Base(tok.Dir))
	if err := os.Rename(tok.Dir, away); err != nil {
		t.Fatalf("move token directory away: %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			if err := os.Rename(away, tok.Dir); err != nil {
				t.Fatalf("restore token directory: %v", err)
			}
			restored = true
		}
	}
	t.Cleanup(restore)
	if err := s.Ping(ctx); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("Ping with the token away: err = %v, want ErrUnavailable", err)
	}
	restore()
	clk.Advance(cfg.MaxBackoff)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the token returned and the backoff passed: %v", err)
	}
	if n := hsm.Signatures(s); n != 0 {
		t.Errorf("Pings asked the token for %d signatures, want none", n)
	}
}

// TestPKCS11TokenOutageAndRecovery takes the token away underneath a running
// store and brings it back.
//
// How the outage is made: the token's own directory is moved out of SoftHSM's
// token directory. SoftHSM notices on the next operation (it re-reads the
// token's generation file) and drops the token's objects: signing then fails
// with CKR_OBJECT_HANDLE_INVALID, FindObjects finds nothing, and because the
// in-memory token stays broken even after the files return (a new login fails
// with CKR_GENERAL_ERROR), recovery needs the module finalized and
// re-initialised. The store does exactly that: it closes its crypto11 context
// (the module's last user, so crypto11 calls C_Finalize) and configures a new
// one (C_Initialize rescans the token directory). While the directory is away
// C_Initialize finds no such token, so reconnects fail.
//
// The test is deliberately not parallel: Go runs it while no parallel test of
// this package is running, so no other context holds the module initialised.
func TestPKCS11TokenOutageAndRecovery(t *testing.T) {
	tok := testkit.NewSoftHSMToken(t)
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	var logs bytes.Buffer
	cfg := tok.Config
	cfg.MinBackoff, cfg.MaxBackoff = time.Second, 4*time.Second
	s, err := hsm.OpenPKCS11(cfg, slog.New(slog.NewTextHandler(&logs, nil)), hsm.WithClock(clk))
	if err != nil {
		t.Fatalf("OpenPKCS11: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	key, err := s.Generate(ctx, "issuing-ca", hsm.ECDSAP256)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	signer := key.Signer // the same value is used throughout
	mustSign(t, signer, "before the outage")

	away := filepath.Join(filepath.Dir(filepath.Dir(tok.Dir)), "away-"+filepath.Base(tok.Dir))
	if err := os.Rename(tok.Dir, away); err != nil {
		t.Fatalf("move token directory away: %v", err)
	}
	restored := false
	restore := func() {
		if !restored {
			if err := os.Rename(away, tok.Dir); err != nil {
				t.Fatalf("restore token directory: %v", err)
			}
			restored = true
		}
	}
	t.Cleanup(restore)

	start := time.Now()
	d := sha256.Sum256([]byte("during the outage"))
	if _, err := signer.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("Sign during the outage: err = %v, want ErrUnavailable", err)
	} else {
		t.Logf("Sign during the outage failed after %v: %v", time.Since(start), err)
	}
	signed := hsm.Signatures(s)
	if err := s.Ping(ctx); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("Ping during the outage: err = %v, want ErrUnavailable", err)
	} else {
		t.Logf("Ping during the outage (one reconnect attempt): %v", err)
	}
	if n := hsm.Signatures(s) - signed; n != 0 {
		t.Errorf("Ping during the outage asked the token for %d signatures, want none", n)
	}
	// Within the backoff, calls fail without trying the token again, from
	// many goroutines at once.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := signer.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrUnavailable) {
				t.Errorf("concurrent Sign during the outage: err = %v, want ErrUnavailable", err)
			}
		})
	}
	wg.Wait()

	restore()
	// The backoff still holds: no reconnect before it expires.
	if _, err := signer.Sign(rand.Reader, d[:], crypto.SHA256); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("Sign within the backoff: err = %v, want ErrUnavailable", err)
	}
	clk.Advance(cfg.MaxBackoff)

	// Same process, same Signer value, no new Find: it works again, for many
	// goroutines at once.
	mustSign(t, signer, "after recovery")
	for range 16 {
		wg.Go(func() { mustSign(t, signer, "concurrently after recovery") })
	}
	wg.Wait()
	signed = hsm.Signatures(s)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after recovery: %v", err)
	}
	if n := hsm.Signatures(s) - signed; n != 0 {
		t.Errorf("Ping after recovery asked the token for %d signatures, want none", n)
	}
	if !strings.Contains(logs.String(), "PKCS#11 token reconnected") {
		t.Errorf("no reconnect logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), cfg.PIN) {
		t.Error("the PIN appears in the logs")
	}
}

func mustSign(t *testing.T, s crypto.Signer, what string) {
	t.Helper()
	d := sha256.Sum256([]byte(what))
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Errorf("Sign %s: %v", what, err)
		return
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Errorf("signature %s does not verify", what)
	}
}
