package casefile

import (
	"strings"
	"testing"
)

type testCase struct {
	Name  string `yaml:"name"`
	Input string `yaml:"input"`
}

func decode(doc string) ([]testCase, error) {
	return Decode([]byte(doc), "demo cases", func(c *testCase) *string { return &c.Name })
}

func TestDecodeNamesUnnamedCasesByPosition(t *testing.T) {
	got, err := decode("cases:\n  - name: first\n    input: a\n  - input: b\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "first" || got[1].Name != "case 2" || got[1].Input != "b" {
		t.Errorf("Decode = %+v", got)
	}
}

func TestDecodeRefusesEmptyFilesAndUnknownFields(t *testing.T) {
	for doc, want := range map[string]string{
		"":                       "demo cases: empty file",
		"cases: []\n":            "demo cases: no cases",
		"cases:\n  - inptu: a\n": "demo cases: yaml:",
		"case:\n  - input: a\n":  "demo cases: yaml:",
	} {
		if _, err := decode(doc); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Decode(%q) = %v; want an error starting %q", doc, err, want)
		}
	}
}

func TestLine(t *testing.T) {
	if got := Line("ok", true, nil); got != "PASS ok" {
		t.Errorf("passed: %q", got)
	}
	if got := Line("bad", false, []string{"one", "two"}); got != "FAIL bad\n    one\n    two" {
		t.Errorf("failed: %q", got)
	}
}
