// Command reporting is the example reporting service: it reads refunds from payments
// (GET /v1/refund-reports/{id}) and also re-issues them (POST
// /v1/refund-reports/{id}/reissue, calling payments' POST /v1/refunds/{id}), a write the policy does not allow it: logged
// would_deny while payments observes, refused with 403 policy_no_write_permission
// once payments enforces.
//
// Run it with the service's certificate from `ca enroll` and the CA's URLs; see
// `reporting -h` and README.md, "Example: three services".
package main

import (
	"os"

	"github.com/workload-ca/workload-ca/examples/authz/service"
)

func main() { os.Exit(service.Main(service.Reporting, os.Args[1:], os.Stderr)) }
