package server

import (
	"errors"
	"net/http"

	"github.com/workload-ca/workload-ca/pkg/issuer"
)

// reservedNameProblem answers a request the issuer refused because it names
// one of the CA's own names (its host names, addresses or a SPIFFE ID under
// spiffe://<td>/ca/): 403 policy_denied, whatever rule granted it. The
// detail names the name and why; it holds nothing secret.
func reservedNameProblem(err error) (int, Reason, string) {
	var re *issuer.ReservedNameError
	if !errors.As(err, &re) {
		return http.StatusForbidden, ReasonPolicyDenied, "the request names a name reserved for the CA"
	}
	return http.StatusForbidden, ReasonPolicyDenied, re.Error()
}

// noteReservedName puts the reserved-name check into the denial's audit
// details, so the audit log says which check refused it.
func noteReservedName(info *decisionInfo, err error) {
	var re *issuer.ReservedNameError
	if errors.As(err, &re) {
		info.details["check"] = re.Check
		info.details["reserved_name"] = clip(re.Name, 256)
	}
}
