package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// goBenchLine is one result line of `go test -bench` output.
type goBenchLine struct {
	Package string  `json:"package"`
	Name    string  `json:"name"`
	NsPerOp float64 `json:"ns_per_op"`
	Extra   string  `json:"extra,omitempty"` // B/op, allocs/op and custom metrics as printed
}

// parseGoBench reads the result lines of `go test -bench -benchmem ./...`
// output, attributing each to the package named by the preceding "pkg:"
// line.
func parseGoBench(path string) ([]goBenchLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []goBenchLine
	pkg := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(strings.TrimSpace(p), "github.com/workload-ca/workload-ca/")
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		// Name  N  ns/op-value "ns/op" [more value unit pairs]
		if len(f) < 4 || f[3] != "ns/op" {
			continue
		}
		ns, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			continue
		}
		out = append(out, goBenchLine{Package: pkg, Name: f[0], NsPerOp: ns, Extra: strings.Join(f[4:], " ")})
	}
	return out, sc.Err()
}

// find returns the first line whose name starts with prefix (the -N CPU
// suffix is ignored).
func findBench(lines []goBenchLine, pkg, prefix string) (goBenchLine, bool) {
	for _, l := range lines {
		if l.Package == pkg && strings.HasPrefix(l.Name, prefix) {
			return l, true
		}
	}
	return goBenchLine{}, false
}
