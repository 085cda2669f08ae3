//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sqlite_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/workload-ca/workload-ca/pkg/store/sqlite"
)

// TestLockServerAdmitsOneServerPerFile: while one holder has the lock a
// second LockServer on the same file fails with ErrServedElsewhere naming
// the holder's pid (flock conflicts between two open files even in one
// process); once released it can be taken again, and another file's lock
// is independent.
func TestLockServerAdmitsOneServerPerFile(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "ca.db")
	release, err := sqlite.LockServer(db)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sqlite.LockServer(db)
	if !errors.Is(err, sqlite.ErrServedElsewhere) || !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v; want ErrServedElsewhere naming pid %d", err, os.Getpid())
	}
	other, err := sqlite.LockServer(filepath.Join(dir, "other.db"))
	if err != nil {
		t.Fatalf("another file's lock: %v", err)
	}
	_ = other()
	if err := release(); err != nil {
		t.Fatal(err)
	}
	again, err := sqlite.LockServer(db)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	_ = again()
	if fi, err := os.Stat(db + ".serve-lock"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v, %v", fi, err)
	}
}

// TestLockServerResolvesLinksAndRefusesAPlantedOne: a second path to the
// same database (through a symbolic link to its directory) meets the same
// lock, and a symbolic link planted as the lock file is refused, its
// target untouched.
func TestLockServerResolvesLinksAndRefusesAPlantedOne(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(data, filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	release, err := sqlite.LockServer(filepath.Join(data, "ca.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := sqlite.LockServer(filepath.Join(dir, "alias", "ca.db")); !errors.Is(err, sqlite.ErrServedElsewhere) {
		t.Fatalf("the same database through a linked directory: %v; want ErrServedElsewhere", err)
	}

	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(data, "other.db.serve-lock")); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.LockServer(filepath.Join(data, "other.db")); err == nil {
		t.Fatal("a symbolic link planted as the lock file was accepted")
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Fatalf("the planted link's target: %q, %v", b, err)
	}
}
