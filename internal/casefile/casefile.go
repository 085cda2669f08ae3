// Package casefile exists so that the offline test-case files of `ca policy
// test` and `ca authz test` are read and reported one way: a strict YAML
// document {cases: [...]}, unnamed cases named by their position, and one
// PASS or FAIL line per case.
package casefile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// Decode decodes data, a YAML document {cases: [...]}, strictly (unknown
// fields are errors) and names every case whose name is empty "case N" (N
// counting from 1). A file without cases is an error; noun prefixes the
// errors, such as "policy test cases".
func Decode[C any](data []byte, noun string, name func(*C) *string) ([]C, error) {
	var f struct {
		Cases []C `yaml:"cases"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file", noun)
		}
		return nil, fmt.Errorf("%s: %w", noun, err)
	}
	if len(f.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases", noun)
	}
	for i := range f.Cases {
		if n := name(&f.Cases[i]); *n == "" {
			*n = fmt.Sprintf("case %d", i+1)
		}
	}
	return f.Cases, nil
}

// Line is a case's outcome as it is printed: "PASS name", or "FAIL name"
// followed by one indented line per failure.
func Line(name string, passed bool, failures []string) string {
	if passed {
		return "PASS " + name
	}
	return "FAIL " + name + "\n    " + strings.Join(failures, "\n    ")
}
