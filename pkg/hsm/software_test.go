package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/hsm"
)

func TestSoftwareStoreFilesAreOwnerOnly(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := hsm.OpenSoftware(dir, nil)
	if err != nil {
		t.Fatalf("OpenSoftware: %v", err)
	}
	defer s.Close()
	if _, err := s.Generate(context.Background(), "root", hsm.ECDSAP256); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %04o, want 0700", fi.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "root.key.pem" {
		t.Fatalf("key directory holds %v, want only root.key.pem (no temporary files)", ents)
	}
	fi, err = os.Stat(filepath.Join(dir, "root.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "root.key.pem"))
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key file is not a PKCS#8 PEM block")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Errorf("key file is not PKCS#8: %v", err)
	}
}

func TestSoftwareStoreRefusesUnsafeKeyFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		tamper  func(t *testing.T, dir, file string)
		wantErr error
	}{
		{"a group-readable key file is refused", func(t *testing.T, _, file string) {
			chmod(t, file, 0o640)
		}, hsm.ErrInsecureKeyFile},
		{"a world-readable key file is refused", func(t *testing.T, _, file string) {
			chmod(t, file, 0o604)
		}, hsm.ErrInsecureKeyFile},
		{"a symlinked key file is refused", func(t *testing.T, dir, file string) {
			target := filepath.Join(dir, "..", "elsewhere.pem")
			if err := os.Rename(file, target); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, file); err != nil {
				t.Fatal(err)
			}
		}, hsm.ErrInsecureKeyFile},
		{"a directory in place of a key file is refused", func(t *testing.T, _, file string) {
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(file, 0o700); err != nil {
				t.Fatal(err)
			}
		}, hsm.ErrInsecureKeyFile},
		{"a deleted key file is not found", func(t *testing.T, _, file string) {
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
		}, hsm.ErrKeyNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "keys")
			s, err := hsm.OpenSoftware(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			key, err := s.Generate(ctx, "k", hsm.ECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			tc.tamper(t, dir, filepath.Join(dir, "k.key.pem"))
			s2, err := hsm.OpenSoftware(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			_, err = s2.Find(ctx, key.URI)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Find: err = %v, want %v", err, tc.wantErr)
			}
			t.Logf("Find: %v", err)
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestSoftwareStoreNeverLogsKeyMaterial(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := hsm.OpenSoftware(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key, err := s.Generate(ctx, "quiet", hsm.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := hsm.OpenSoftware(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	found, err := s2.Find(ctx, key.URI)
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	if _, err := found.Signer.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "quiet.key.pem"))
	block, _ := pem.Decode(b)
	der := base64.StdEncoding.EncodeToString(block.Bytes)
	for _, chunk := range []string{der[:24], der[len(der)/2 : len(der)/2+24], der[len(der)-24:]} {
		if strings.Contains(logs.String(), chunk) {
			t.Fatalf("key material in logs:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "software key generated") {
		t.Errorf("generation not logged:\n%s", logs.String())
	}
}

func TestSoftwareSignerDoesNotExposeThePrivateKey(t *testing.T) {
	t.Parallel()
	s, err := hsm.OpenSoftware(filepath.Join(t.TempDir(), "keys"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key, err := s.Generate(context.Background(), "hidden", hsm.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	switch key.Signer.(type) {
	case interface{ Equal(crypto.PrivateKey) bool }:
		t.Errorf("signer is a private key type (%T)", key.Signer)
	}
}

func TestSoftwarePingNoticesAMissingKeyFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := hsm.OpenSoftware(dir, nil)
	if err != nil {
		t.Fatalf("OpenSoftware: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Generate(ctx, "intermediate", hsm.ECDSAP256); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping with the key file in place: %v", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("key directory holds %d entries (%v), want 1", len(ents), err)
	}
	if err := os.Rename(filepath.Join(dir, ents[0].Name()), filepath.Join(t.TempDir(), "moved")); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); !errors.Is(err, hsm.ErrUnavailable) {
		t.Errorf("Ping with the key file gone: err = %v, want ErrUnavailable", err)
	}
}
