// Package migrations holds the database schema as golang-migrate SQL files, one
// folder per dialect, embedded so that the one binary can run `ca migrate`
// without files on disk.
package migrations

import "embed"

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
// newest migration, the same in both dialects. A test checks it against the
// files, so adding a migration without raising it fails.
const Version uint = 1
