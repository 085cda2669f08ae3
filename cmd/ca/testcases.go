package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

// The offline case runner `ca policy test` and `ca authz test` share: the
// policy file before or after the flags, --cases, one line per case, a
// summary line, and exit 1 when any case failed.

// caseSuite names one command's cases in its messages.
type caseSuite struct {
	usage   string // the synopsis an errUsage names: "ca policy test POLICY.yaml --cases CASES.yaml"
	subject string // how the summary names the policy: "policy" or "authz policy"
	noun    string // how the failure names the cases: "policy test cases"
}

// parseArgs parses `POLICY --cases CASES` with the policy file before or
// after fs's flags; cases is fs's --cases flag. Both are required.
func (s caseSuite) parseArgs(fs *flag.FlagSet, cases *string, args []string, stderr io.Writer) (file string, err error) {
	rest := args
	if len(rest) > 0 && len(rest[0]) > 0 && rest[0][0] != '-' {
		file, rest = rest[0], rest[1:]
	}
	if err := parseFlags(fs, rest, stderr); err != nil {
		return "", err
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return "", fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if file == "" || *cases == "" {
		return "", fmt.Errorf("%w: %s", errUsage, s.usage)
	}
	return file, nil
}

// runCases reads casesFile, parses its cases with parse and runs them with
// run, prints each result and the summary line "<subject> FILE (version V):
// N passed, M failed", and returns an error (exit 1) when any case failed.
func runCases[C any, R fmt.Stringer](s caseSuite, stdout io.Writer, file, version, casesFile string,
	parse func([]byte) ([]C, error), run func([]C) []R, passed func(R) bool) error {
	raw, err := os.ReadFile(casesFile)
	if err != nil {
		return fmt.Errorf("reading the cases: %w", err)
	}
	tcs, err := parse(raw)
	if err != nil {
		return err
	}
	failed := 0
	for _, res := range run(tcs) {
		fmt.Fprintln(stdout, res.String())
		if !passed(res) {
			failed++
		}
	}
	fmt.Fprintf(stdout, "%s %s (version %s): %d passed, %d failed\n", s.subject, file, version[:12], len(tcs)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d %s failed", failed, len(tcs), s.noun)
	}
	return nil
}
