package store

import "time"

// Observer is told of every statement a store sends to its database (and of
// each connection it opens), so that pkg/telemetry can time them without a
// wrapper around every store method. op summarises the statement without
// any value in it (sqlstore.Summary: "SELECT certificates", "INSERT
// audit_log", "COMMIT", "CONNECT"); d is how long it took, until its last
// row was read; err is nil or the driver's error mapped as the store maps
// it (ErrNotFound, ErrConflict, ErrUnavailable are recognisable; a context
// error stays one). ObserveStatement is called from many goroutines at once,
// on the query path: it must be quick and must not block.
type Observer interface {
	ObserveStatement(op string, d time.Duration, err error)
}
