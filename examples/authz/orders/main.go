// Command orders is the example orders service: POST /v1/orders/{id}/refund refunds an
// order by calling payments' POST /v1/refunds with orders' own certificate, a call
// the policy allows.
//
// Run it with the service's certificate from `ca enroll` and the CA's URLs; see
// `orders -h` and README.md, "Example: three services".
package main

import (
	"os"

	"github.com/workload-ca/workload-ca/examples/authz/service"
)

func main() { os.Exit(service.Main(service.Orders, os.Args[1:], os.Stderr)) }
