// Command payments is the example payments service: it keeps refunds (POST /v1/refunds,
// GET /v1/refunds/{id}, POST /v1/refunds/{id} to re-issue one) and lets pkg/authz decide, from the policy the CA serves it,
// who may write and who may only read them.
//
// Run it with the service's certificate from `ca enroll` and the CA's URLs; see
// `payments -h` and README.md, "Example: three services".
package main

import (
	"os"

	"github.com/workload-ca/workload-ca/examples/authz/service"
)

func main() { os.Exit(service.Main(service.Payments, os.Args[1:], os.Stderr)) }
