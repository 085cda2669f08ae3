// Command ca-load is the load generator behind `make bench`: it sets up a
// production-shaped `ca serve` (Postgres and a SoftHSM token) on loopback,
// measures the SoftHSM signing ceiling in the same run, drives the server with
// pre-minted tokens and pre-generated CSRs (enroll, renew, OCSP, bundle, CRL)
// and a plain net/http baseline, reads the server's CPU time and peak RSS from
// /proc, and writes a Markdown and JSON report with every target marked PASS
// or MISS. It is a benchmark tool, not part of the CA.
package main
