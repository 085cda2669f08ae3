package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/workload-ca/workload-ca"

// pkg is the part of `go list -json` this test reads.
type pkg struct {
	ImportPath   string
	Name         string
	Doc          string
	GoFiles      []string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// listPackages runs `go list -json ./...` over the whole module.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", module+"/...")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, errOut.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(&out)
	for {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages; is the module root right?", len(pkgs))
	}
	return pkgs
}

// under reports whether path is the package dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// rule forbids packages matching from to import anything matching to.
type rule struct {
	why  string
	from func(p string) bool
	to   func(imp string) bool
	// tests also checks the packages' test imports.
	tests bool
}

func inModule(dir string) func(string) bool {
	return func(p string) bool { return under(p, module+"/"+dir) }
}

func anyOf(fs ...func(string) bool) func(string) bool {
	return func(s string) bool {
		for _, f := range fs {
			if f(s) {
				return true
			}
		}
		return false
	}
}

func exactly(imps ...string) func(string) bool {
	return func(s string) bool {
		for _, i := range imps {
			if under(s, i) {
				return true
			}
		}
		return false
	}
}

var rules = []rule{
	{
		why:   "only pkg/hsm may speak PKCS#11 (crypto11, miekg/pkcs11)",
		from:  func(p string) bool { return !under(p, module+"/pkg/hsm") },
		to:    exactly("github.com/ThalesGroup/crypto11", "github.com/ThalesIgnite/crypto11", "github.com/miekg/pkcs11"),
		tests: false,
	},
	{
		why:   "nothing may use the unmaintained ThalesIgnite crypto11 path",
		from:  func(string) bool { return true },
		to:    exactly("github.com/ThalesIgnite/crypto11"),
		tests: true,
	},
	{
		why:  "the store and the HSM never import the layers above them",
		from: anyOf(inModule("pkg/store"), inModule("pkg/hsm")),
		to: anyOf(inModule("pkg/server"), inModule("pkg/issuer"), inModule("pkg/enroll"),
			inModule("pkg/revoke"), inModule("pkg/policy"), inModule("cmd")),
		tests: false,
	},
	{
		why:   "the store and the HSM are not HTTP code",
		from:  anyOf(inModule("pkg/store"), inModule("pkg/hsm")),
		to:    exactly("net/http"),
		tests: false,
	},
	{
		why:   "the issuer signs; it never sees HTTP or tokens",
		from:  inModule("pkg/issuer"),
		to:    anyOf(exactly("net/http"), inModule("pkg/server"), inModule("pkg/enroll")),
		tests: false,
	},
	{
		why:  "the shared store operations name no driver: each dialect adapts its own (pkg/store/sqlstore)",
		from: inModule("pkg/store/sqlstore"),
		to: anyOf(exactly("database/sql", "github.com/jackc/pgx", "modernc.org/sqlite"),
			inModule("pkg/store/postgres"), inModule("pkg/store/sqlite")),
		tests: true,
	},
	{
		why:   "dependencies point one way: nothing below cmd imports a command",
		from:  func(p string) bool { return !under(p, module+"/cmd") },
		to:    inModule("cmd"),
		tests: true,
	},
}

func TestImportBoundaries(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, r := range rules {
			if !r.from(p.ImportPath) {
				continue
			}
			imps := p.Imports
			if r.tests {
				imps = append(append(append([]string{}, imps...), p.TestImports...), p.XTestImports...)
			}
			for _, imp := range imps {
				if r.to(imp) {
					t.Errorf("%s imports %s: %s", p.ImportPath, imp, r.why)
				}
			}
		}
	}
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.Error != nil {
			t.Errorf("%s: %s", p.ImportPath, p.Error.Err)
			continue
		}
		if len(p.GoFiles) == 0 {
			continue // test-only directories have no package doc to show
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment (say in doc.go why the package exists)", p.ImportPath)
		}
	}
}

func TestTheRulesCatchViolations(t *testing.T) {
	tests := []struct {
		name     string
		from     string
		imp      string
		violates bool
	}{
		{"the server importing crypto11 is caught", module + "/pkg/server", "github.com/ThalesGroup/crypto11", true},
		{"pkg/hsm importing crypto11 is allowed", module + "/pkg/hsm", "github.com/ThalesGroup/crypto11", false},
		{"the store importing net/http is caught", module + "/pkg/store/postgres", "net/http", true},
		{"the store importing the issuer is caught", module + "/pkg/store", module + "/pkg/issuer", true},
		{"the HSM importing the server is caught", module + "/pkg/hsm", module + "/pkg/server", true},
		{"the server importing the issuer is allowed", module + "/pkg/server", module + "/pkg/issuer", false},
		{"a package importing cmd/ca is caught", module + "/pkg/server", module + "/cmd/ca", true},
		{"net/http/httptest counts as net/http", module + "/pkg/hsm", "net/http/httptest", true},
		{"the shared store operations importing pgx are caught", module + "/pkg/store/sqlstore", "github.com/jackc/pgx/v5", true},
		{"the shared store operations importing database/sql are caught", module + "/pkg/store/sqlstore", "database/sql", true},
		{"the Postgres store importing the shared operations is allowed", module + "/pkg/store/postgres", module + "/pkg/store/sqlstore", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			violates := false
			for _, r := range rules {
				if r.from(tt.from) && r.to(tt.imp) {
					violates = true
				}
			}
			if violates != tt.violates {
				t.Errorf("violates = %v, want %v", violates, tt.violates)
			}
		})
	}
}
