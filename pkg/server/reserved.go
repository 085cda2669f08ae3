package server

import (
	"errors"

	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// noteReservedName puts the reserved-name check into the denial's audit
// details, so the audit log says which check refused it.
func noteReservedName(info *decisionInfo, err error) {
	var re *issuer.ReservedNameError
	if errors.As(err, &re) {
		info.details["check"] = re.Check
		info.details["reserved_name"] = clip(re.Name, 256)
	}
}
