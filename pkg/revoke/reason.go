package revoke

import (
	"errors"
	"fmt"
	"slices"
)

// ErrInvalidReason is what every *ReasonError matches with errors.Is.
var ErrInvalidReason = errors.New("revoke: invalid revocation reason")

// ReasonError is returned by Revoke for a reason name operators may not use.
type ReasonError struct {
	Reason string
}

func (e *ReasonError) Error() string {
	return fmt.Sprintf("revoke: invalid revocation reason %q (use one of %v)", e.Reason, ReasonNames())
}

// Is makes errors.Is(err, ErrInvalidReason) true.
func (e *ReasonError) Is(target error) bool { return target == ErrInvalidReason }

// reasonCodes are the RFC 5280 section 5.3.1 CRLReason values an operator
// may give. Refused: certificateHold and removeFromCRL (holds are not
// supported; a revocation is final) and aACompromise (no attribute
// certificates here).
var reasonCodes = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"privilegeWithdrawn":   9,
}

// ReasonNames lists the accepted reason names, sorted.
func ReasonNames() []string {
	names := make([]string, 0, len(reasonCodes))
	for n := range reasonCodes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ReasonCode returns the RFC 5280 CRLReason code of an accepted reason name,
// or a *ReasonError.
func ReasonCode(name string) (int, error) {
	c, ok := reasonCodes[name]
	if !ok {
		return 0, &ReasonError{Reason: name}
	}
	return c, nil
}

// storedReasonCode maps a stored reason name to its code; names this version
// does not accept (written by hand or a future version) count as unspecified
// rather than dropping the entry.
func storedReasonCode(name string) int {
	return reasonCodes[name]
}
