//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sqlite

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// ErrServedElsewhere means another process holds the server lock of the
// database file (LockServer).
var ErrServedElsewhere = errors.New("sqlite: another `ca serve` is serving this database file")

// LockServer takes the server lock of the database file at path: an
// exclusive flock(2) on path+".serve-lock", which the kernel releases when
// the process ends however it ends (kill -9 included), so a crash never
// leaves it stale. The embedded store keeps state that must be the only
// one for its file: the token replay marks being decided live in the
// process's memory until their group commits (marks.go), and the embedded
// leader election is in-process. Two servers on one file would each check
// replays against their own memory. So `ca serve` takes this lock before it
// opens the store, and a second one fails with ErrServedElsewhere (naming
// the holder's pid). Other commands (`ca audit archive`, `ca init`, reads)
// open the file beside the server and do not take it. release closes the
// lock file, which drops the lock.
//
// The lock file is named after the database file's real path (symbolic
// links resolved), so two paths to one file share one lock; it is opened
// without following a symbolic link and must be a regular file, so a link
// planted in its place makes the server refuse to start instead of
// truncating the link's target.
func LockServer(path string) (release func() error, err error) {
	resolved, err := realPath(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: resolving the database path for the server lock: %w", err)
	}
	lockPath := resolved + ".serve-lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: opening the server lock %s: %w", lockPath, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("sqlite: the server lock %s is not a regular file", lockPath)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(lockPath)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(holder))); perr == nil && pid > 0 {
				who = "process " + strconv.Itoa(pid)
			}
			return nil, fmt.Errorf("%w: %s holds %s (one server process per SQLite file; run replicas on Postgres)", ErrServedElsewhere, who, lockPath)
		}
		return nil, fmt.Errorf("sqlite: taking the server lock %s: %w", lockPath, err)
	}
	// Who holds it, for the next one's error message; the lock, not this
	// content, is what excludes.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f.Close, nil
}

// realPath is path made absolute with its symbolic links resolved: the
// file's own when it exists, else its directory's.
func realPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		return resolved, nil
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(abs)), nil
}
