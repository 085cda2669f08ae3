// Package migrations holds the database schema as golang-migrate SQL files, one
// folder per dialect, embedded so that the one binary can run `ca migrate`
// without files on disk.
package migrations

import (
	"embed"
	"io/fs"
	"regexp"
	"strconv"
)

// Files holds both dialects' migrations: postgres/NNNNNN_name.{up,down}.sql and
// sqlite/NNNNNN_name.{up,down}.sql. Hand the folder to golang-migrate's iofs
// source with PostgresDir or SQLiteDir.
//
//go:embed postgres/*.sql sqlite/*.sql
var Files embed.FS

// Folders of Files, one per dialect.
const (
	PostgresDir = "postgres"
	SQLiteDir   = "sqlite"
)

// Version is the schema version this binary is built for: the number of the
// newest Postgres migration. A test checks that both dialects have an up and a
// down file for every version from 1 to Version, so the dialects cannot drift.
// It is derived from the files so that adding a migration is one step.
var Version = newest(PostgresDir)

var migrationName = regexp.MustCompile(`^(\d+)_[a-z0-9_]+\.(up|down)\.sql$`)

func newest(dir string) uint {
	entries, err := fs.ReadDir(Files, dir)
	if err != nil {
		panic("migrations: embedded folder missing: " + dir)
	}
	var v uint
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		n, err := strconv.ParseUint(m[1], 10, 32)
		if err == nil && uint(n) > v {
			v = uint(n)
		}
	}
	return v
}
