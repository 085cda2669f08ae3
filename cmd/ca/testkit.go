package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/workload-ca/workload-ca/pkg/testca"
)

// cmdTestkit writes a throwaway test CA's deliberately bad credentials (and a
// good control) for users' own negative tests. It never touches the CA's
// configuration, database or keys.
func cmdTestkit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("testkit", flag.ContinueOnError)
	out := fs.String("out", "", "write the kit into `DIR` (required)")
	td := fs.String("trust-domain", "example.org", "trust domain of the test CA")
	crlURL := fs.String("crl-url", testca.DefaultCRLURL, "`URL` written into the test credentials as CRL distribution point; serve DIR/ca/crl/ there")
	lifetime := fs.Duration("lifetime", 365*24*time.Hour, "lifetime of the valid credentials and of the CRL")
	jsonOut := fs.Bool("json", false, "print the manifest as JSON")
	if err := parseFlagsOnly(fs, args, stderr); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out is required", errUsage)
	}
	if *lifetime <= time.Hour {
		return fmt.Errorf("%w: --lifetime must be more than 1h", errUsage)
	}
	kit, err := testca.NewKit(testca.KitOptions{TrustDomain: *td, CRLURL: *crlURL, Lifetime: *lifetime})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	m, err := kit.Write(*out)
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	fmt.Fprintf(stdout, "%s\n\nwrote %s (trust only %s; authorize only %s; serve %s at %s)\n\n",
		m.Warning, filepath.Join(*out, "manifest.json"), m.BundlePEM, m.AuthorizedID, m.CRL.File, m.CRL.URL)
	fmt.Fprintf(stdout, "%-20s %-26s %-26s %s\n", "credential", "presented by a client", "presented by a server", "spiffe id")
	for _, c := range m.Credentials {
		fmt.Fprintf(stdout, "%-20s %-26s %-26s %s\n", c.Name, c.ExpectAsClient, c.ExpectAsServer, c.SPIFFEID)
	}
	return nil
}
