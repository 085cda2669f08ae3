package store

import "fmt"

// CheckSchema tells whether a database may be served by a binary built for
// schema version want. present is false when no migration has ever run (or
// all were rolled back); version and dirty are what golang-migrate recorded.
// The error wraps ErrSchemaMismatch and says what to run.
func CheckSchema(version uint, dirty, present bool, want uint) error {
	switch {
	case !present:
		return fmt.Errorf("%w: the database has no schema; run `ca migrate up`", ErrSchemaMismatch)
	case dirty:
		return fmt.Errorf("%w: the migration to schema version %d failed half-way (dirty); repair the database, then run `ca migrate force %d` and `ca migrate up`", ErrSchemaMismatch, version, version-1)
	case version > want:
		return fmt.Errorf("%w: unknown schema version %d, this binary knows up to %d; upgrade the binary", ErrSchemaMismatch, version, want)
	case version < want:
		return fmt.Errorf("%w: schema version %d is older than version %d this binary needs; run `ca migrate up`", ErrSchemaMismatch, version, want)
	}
	return nil
}
