// Command ca is the one binary of workload-ca: the CA server (`ca serve`), its
// set-up (`ca init`, `ca migrate`) and `ca version`. Configuration is read once,
// by pkg/config, from --config / CA_CONFIG and the CA_* environment.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/workload-ca/workload-ca/pkg/config"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // bad arguments or invalid configuration
)

// errUsage marks errors that are the caller's mistake (exit code 2).
var errUsage = errors.New("usage")

const usage = `usage: ca <command> [flags]

commands:
  serve     run the CA (API listener over HTTPS, public listener over HTTP)
  init      create the root and intermediate CA (idempotent), or run the
            offline-root flow with --intermediate-csr / --import-intermediate
  migrate   up | down | version | force N: change or show the database schema
  enroll    CI client: get the job's OIDC token (GitHub Actions, GitLab CI or
            --token-file), generate a key, enroll; writes key, cert, chain, bundle
  renew     renew over mTLS with the current certificate (--daemon: keep renewing)
  agent     renew like renew --daemon and serve the SPIFFE Workload API on --socket
  policy    test POLICY.yaml --cases CASES.yaml: run a policy's offline test cases
  authz     check --policy F --source ID --service S --method M --path P (exit 1 if
            not allowed) | test POLICY --cases CASES | explain --policy F
            [--service S] [--source ID]: service-to-service authorization, offline;
            overrides request | approve ID | end ID | list: emergency overrides
            through the CA's API (operators, like ca revoke)
  dev-token --sub NAME [--claim k=v]: print a token of the development setup's
            local token issuer (development setup only)
  issuers   list | rotate [--root] | activate [--force] | abandon [--id ID] | tick: CA rotation
  bundle    versions | publish [--force] | rollback --to N [--force]: trust bundle versions
  jwt       --audience AUD [--audience ...] [--ttl 5m]: get a JWT-SVID over mTLS
            with the workload's certificate and key; prints the token
  jwt-keys  list | rotate [--emergency] | tick: JWT-SVID signing keys
  revoke    SERIAL --reason R --server URL: revoke a certificate as an operator
            (--token-file or --client-cert/--client-key; --ca-bundle or
            --ca-fingerprint)
  identity  revoke ID --reason R [--hold 24h] | hold ID --for 24h | release ID |
            list: contain a compromised workload (same flags as revoke)
  probe     HOST:PORT --bundle-url URL [--client-cert F --client-key F] [--expect-id ID]
            [--json]: debug an mTLS endpoint (reasons as in pkg/mtls); exit 1 on failure
  hsm       check [--all-key-types | --key-type T ...]: what the PKCS#11 token
            supports; makes, signs and verifies with, reads back and removes a
            throwaway key of each configured key type (exit 1 if one fails)
  audit     verify [--checkpoint-key F] [--anchor SEQ:HASH]: check the audit log's
            hash chain against its signed checkpoints (read-only); name the first
            entry altered, removed or reordered, or checkpoints missing or invalid
            (exit 1); --archive F also verifies an archive file | archive --before
            DURATION|SEQ --out F [--remove]: export old entries up to a signed
            checkpoint, and remove them (migration owner) | checkpoint-key: print
            the checkpoint public key to pin
  gendata   --count N: fill a Postgres database with N synthetic certificate rows
            (test data for measuring the inventory; never in production) |
            --workloads N [--renew-every 1h] [--span 8760h]: a history of
            enrollments and renewals with OCSP and audit (Postgres or SQLite)
  testkit   --out DIR: a throwaway test CA's bad credentials for negative tests
  healthcheck [--url URL]: exit 0 when the public listener's /readyz answers
            200 (a container HEALTHCHECK; the runtime image has no curl)
  version   print the version

Every command takes --config FILE (or CA_CONFIG); see README.md for the
CA_* environment overrides. The PKCS#11 PIN is never accepted as a flag.
`

// env is the process environment as config.Load reads it; nothing else reads
// environment variables.
type env = config.Env

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and turns its error into one stderr line and
// an exit code.
func run(ctx context.Context, args []string, getenv env, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], getenv, stderr)
	case "init":
		err = cmdInit(ctx, args[1:], getenv, stdout, stderr)
	case "migrate":
		err = cmdMigrate(ctx, args[1:], getenv, stdout, stderr)
	case "enroll":
		err = cmdEnroll(ctx, args[1:], getenv, stdout, stderr)
	case "renew":
		err = cmdRenew(ctx, args[1:], getenv, stdout, stderr)
	case "policy":
		err = cmdPolicy(args[1:], getenv, stdout, stderr)
	case "authz":
		if len(args) > 1 && args[1] == "overrides" {
			err = cmdAuthzOverrides(ctx, args[2:], os.Stdin, stdout, stderr)
			break
		}
		err = cmdAuthz(args[1:], stdout, stderr)
	case "issuers":
		err = cmdIssuers(ctx, args[1:], getenv, stdout, stderr)
	case "bundle":
		err = cmdBundle(ctx, args[1:], getenv, stdout, stderr)
	case "agent":
		err = cmdAgent(ctx, args[1:], getenv, stdout, stderr)
	case "jwt":
		err = cmdJWT(ctx, args[1:], getenv, stdout, stderr)
	case "jwt-keys":
		err = cmdJWTKeys(ctx, args[1:], getenv, stdout, stderr)
	case "revoke":
		err = cmdRevoke(ctx, args[1:], os.Stdin, stdout, stderr)
	case "identity":
		err = cmdIdentity(ctx, args[1:], os.Stdin, stdout, stderr)
	case "probe":
		err = cmdProbe(ctx, args[1:], stdout, stderr)
	case "hsm":
		err = cmdHSM(ctx, args[1:], getenv, stdout, stderr)
	case "testkit":
		err = cmdTestkit(args[1:], stdout, stderr)
	case "audit":
		err = cmdAudit(ctx, args[1:], getenv, stdout, stderr)
	case "gendata":
		err = cmdGendata(ctx, args[1:], getenv, stdout, stderr)
	case "dev-token":
		err = cmdDevToken(args[1:], getenv, stdout, stderr)
	case "healthcheck":
		err = cmdHealthcheck(ctx, args[1:], getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "ca: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errFlagHelp):
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, config.ErrInvalid):
		fmt.Fprintf(stderr, "ca %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "ca %s: %v\n", args[0], err)
		return exitError
	}
}
