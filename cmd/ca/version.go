package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/workload-ca/workload-ca/pkg/store/storeopen"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func versionString() string {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("ca %s%s (%s, schema %d)", version, rev, runtime.Version(), storeopen.ExpectedVersion)
}
