package migrations

import (
	"io/fs"
	"strconv"
	"testing"
)

// Every dialect has an up and a down file for each version 1..Version, and
// nothing else, so that Version cannot drift from the files.
func TestVersionMatchesFiles(t *testing.T) {
	name := migrationName
	for _, dir := range []string{PostgresDir, SQLiteDir} {
		entries, err := fs.ReadDir(Files, dir)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range entries {
			m := name.FindStringSubmatch(e.Name())
			if m == nil {
				t.Errorf("%s/%s is not NNNNNN_name.{up,down}.sql", dir, e.Name())
				continue
			}
			n, _ := strconv.Atoi(m[1])
			if n < 1 || uint(n) > Version {
				t.Errorf("%s/%s: version %d outside 1..%d (raise migrations.Version)", dir, e.Name(), n, Version)
			}
			seen[strconv.Itoa(n)+m[2]] = true
		}
		for v := uint(1); v <= Version; v++ {
			for _, d := range []string{"up", "down"} {
				if !seen[strconv.FormatUint(uint64(v), 10)+d] {
					t.Errorf("%s: no %s migration for version %d", dir, d, v)
				}
			}
		}
	}
}
