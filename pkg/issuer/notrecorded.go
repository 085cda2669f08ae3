package issuer

import "fmt"

// NotRecordedError is Issue's error when the HSM signed a certificate but
// its record could not be committed (the database did not answer in time,
// say): the certificate was discarded and never returned. Serial lets the
// refusal's audit entry say so. If the commit itself was under way, the row
// may still exist: a record without a returned certificate, never the
// reverse.
type NotRecordedError struct {
	Serial string
	Err    error
}

func (e *NotRecordedError) Error() string {
	return fmt.Sprintf("issuer: certificate %s signed but not recorded, discarded: %v", e.Serial, e.Err)
}

// Unwrap returns the store's error.
func (e *NotRecordedError) Unwrap() error { return e.Err }
