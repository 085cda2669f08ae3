//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sqlite

import "errors"

// ErrServedElsewhere means another process holds the server lock of the
// database file (LockServer).
var ErrServedElsewhere = errors.New("sqlite: another `ca serve` is serving this database file")

// LockServer takes no lock where flock(2) does not exist: there, one server
// process per database file is the operator's to ensure (see the unix
// version).
func LockServer(string) (func() error, error) { return func() error { return nil }, nil }
